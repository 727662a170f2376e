package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/regcache/regcache/internal/cache"
)

type pflagSet = pflag.FlagSet

func newPflagSet() *pflag.FlagSet { return pflag.NewFlagSet("cache", pflag.ContinueOnError) }

// progressBar draws a verification's progress on a terminal (redrawn in
// place), or writes a line every tenth of the way elsewhere.
type progressBar struct {
	w        io.Writer
	tty      bool
	last     time.Time
	lastTen  int64
	drawn    bool
	finished bool
}

func newProgressBar(w io.Writer) *progressBar {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progressBar{w: w, tty: tty, lastTen: -1}
}

func (p *progressBar) show(ev cache.VerifyEvent) {
	pct := int64(100)
	if ev.Total > 0 {
		pct = min(100, ev.Done*100/ev.Total)
	}
	text := fmt.Sprintf("verifying %3d%% %s %s of %s, %d files", pct, bar(pct, 30), humanBytes(ev.Done), humanBytes(ev.Total), ev.Files)
	if !p.tty {
		if pct/10 != p.lastTen {
			p.lastTen = pct / 10
			fmt.Fprintln(p.w, text)
		}
		return
	}
	if time.Since(p.last) < 100*time.Millisecond && ev.Done < ev.Total {
		return
	}
	p.last = time.Now()
	fmt.Fprintf(p.w, "\r%s\033[K", text)
	p.drawn = true
}

func bar(pct int64, width int) string {
	n := int(pct) * width / 100
	return "[" + strings.Repeat("=", n) + strings.Repeat(" ", width-n) + "]"
}

// clear removes the bar from the terminal line before other output.
func (p *progressBar) clear() {
	if p.tty && p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

func (p *progressBar) done() {
	if p.tty && p.drawn && !p.finished {
		fmt.Fprintln(p.w)
	}
	p.finished = true
}
