package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

type pflagSet = pflag.FlagSet

func newPflagSet() *pflag.FlagSet { return pflag.NewFlagSet("cache", pflag.ContinueOnError) }

// progressBar draws the progress of long work (a verification, an export,
// an import) on a terminal (redrawn in place), or writes a line every
// tenth of the way elsewhere.
type progressBar struct {
	w        io.Writer
	verb     string // "verifying"
	tty      bool
	last     time.Time
	lastTen  int64
	drawn    bool
	finished bool
}

func newProgressBar(w io.Writer, verb string) *progressBar {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progressBar{w: w, verb: verb, tty: tty, lastTen: -1}
}

// show draws done bytes of total; files (when not negative) is how many
// files that was.
func (p *progressBar) show(done, total int64, files int) {
	pct := int64(100)
	if total > 0 {
		pct = min(100, done*100/total)
	}
	text := fmt.Sprintf("%s %3d%% %s %s of %s", p.verb, pct, bar(pct, 30), humanBytes(min(done, total)), humanBytes(total))
	if files >= 0 {
		text += fmt.Sprintf(", %d files", files)
	}
	if !p.tty {
		if pct/10 != p.lastTen {
			p.lastTen = pct / 10
			fmt.Fprintln(p.w, text)
		}
		return
	}
	if time.Since(p.last) < 100*time.Millisecond && done < total {
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

// progressWriter shows the bytes written through it on a progressBar.
type progressWriter struct {
	w           io.Writer
	bar         *progressBar
	done, total int64
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	p.bar.show(p.done, p.total, -1)
	return n, err
}

// progressReader shows the bytes read through it on a progressBar.
type progressReader struct {
	r           io.Reader
	bar         *progressBar
	done, total int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	p.bar.show(p.done, p.total, -1)
	return n, err
}
