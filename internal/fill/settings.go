package fill

import "time"

// Settings are the bounds the manager's fills run with, as it holds them
// (for /status).
type Settings struct {
	Timeout time.Duration `json:"timeout"`
	MaxSize int64         `json:"maxSize"`
}

// Settings reports the manager's bounds.
func (m *Manager) Settings() Settings { return Settings{Timeout: m.timeout, MaxSize: m.maxSize} }
