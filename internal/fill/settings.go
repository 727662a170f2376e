package fill

import (
	"strconv"
	"time"
)

// Settings are the bounds the manager's fills run with, as it holds them
// (for /status).
type Settings struct {
	Timeout time.Duration `json:"timeout"`
	MaxSize int64         `json:"maxSize"`
}

// Settings reports the manager's bounds.
func (m *Manager) Settings() Settings { return Settings{Timeout: m.timeout, MaxSize: m.maxSize} }

// Options adds, by option key, what the fills run with.
func (m *Manager) Options(opts map[string]string) {
	opts["fill_timeout"], opts["storage.max_blob_size"] = m.timeout.String(), strconv.FormatInt(m.maxSize, 10)
}
