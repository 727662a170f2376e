package clientconfig

import (
	"fmt"
	"strings"
)

// DiffOptions names the two sides of a unified diff.
type DiffOptions struct {
	// OldName and NewName head the diff; use "/dev/null" for a file that is
	// created or removed.
	OldName, NewName string
	// Context is the number of unchanged lines around each change (default 3).
	Context int
}

// Diff returns a unified diff (as diff -u and patch understand it) turning
// old into new, or "" when they are equal. Config files are small, so a
// plain longest-common-subsequence table is enough.
func Diff(old, new []byte, opts DiffOptions) string {
	if string(old) == string(new) {
		return ""
	}
	if opts.Context <= 0 {
		opts.Context = 3
	}
	a, b := splitLines(string(old)), splitLines(string(new))
	ops := editScript(a, b)

	var sb strings.Builder
	fmt.Fprintf(&sb, "--- %s\n+++ %s\n", opts.OldName, opts.NewName)
	for start := 0; start < len(ops); {
		// find the next change
		for start < len(ops) && ops[start].kind == ' ' {
			start++
		}
		if start == len(ops) {
			break
		}
		lo := max(start-opts.Context, 0)
		hi := start
		for hi < len(ops) {
			if ops[hi].kind != ' ' {
				hi++
				continue
			}
			run := hi
			for run < len(ops) && ops[run].kind == ' ' {
				run++
			}
			if run == len(ops) || run-hi > 2*opts.Context {
				hi = min(hi+opts.Context, len(ops))
				break
			}
			hi = run
		}
		writeHunk(&sb, ops[lo:hi])
		start = hi
	}
	return sb.String()
}

type diffOp struct {
	kind       byte // ' ', '-', '+'
	line       string
	aPos, bPos int // 0-based line numbers in a and b before this op
}

func writeHunk(sb *strings.Builder, ops []diffOp) {
	var na, nb int
	for _, op := range ops {
		if op.kind != '+' {
			na++
		}
		if op.kind != '-' {
			nb++
		}
	}
	aStart, bStart := ops[0].aPos+1, ops[0].bPos+1
	if na == 0 {
		aStart--
	}
	if nb == 0 {
		bStart--
	}
	fmt.Fprintf(sb, "@@ -%s +%s @@\n", hunkRange(aStart, na), hunkRange(bStart, nb))
	for _, op := range ops {
		sb.WriteByte(op.kind)
		sb.WriteString(op.line)
		if !strings.HasSuffix(op.line, "\n") {
			sb.WriteString("\n\\ No newline at end of file\n")
		}
	}
}

func hunkRange(start, n int) string {
	if n == 1 {
		return fmt.Sprint(start)
	}
	return fmt.Sprintf("%d,%d", start, n)
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// editScript returns the shortest edit script from a to b (LCS table).
func editScript(a, b []string) []diffOp {
	n, m := len(a), len(b)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var ops []diffOp
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			ops = append(ops, diffOp{' ', a[i], i, j})
			i, j = i+1, j+1
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			ops = append(ops, diffOp{'+', b[j], i, j})
			j++
		default:
			ops = append(ops, diffOp{'-', a[i], i, j})
			i++
		}
	}
	// Show deletions before insertions within a change, as diff -u does.
	for k := 0; k < len(ops); {
		if ops[k].kind == ' ' {
			k++
			continue
		}
		e := k
		for e < len(ops) && ops[e].kind != ' ' {
			e++
		}
		a0, b0 := ops[k].aPos, ops[k].bPos
		var dels, adds []diffOp
		for _, op := range ops[k:e] {
			if op.kind == '-' {
				dels = append(dels, diffOp{'-', op.line, a0 + len(dels), b0})
			}
		}
		for _, op := range ops[k:e] {
			if op.kind == '+' {
				adds = append(adds, diffOp{'+', op.line, a0 + len(dels), b0 + len(adds)})
			}
		}
		copy(ops[k:], append(dels, adds...))
		k = e
	}
	return ops
}
