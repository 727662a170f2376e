package config

import "strings"

// Suggest returns the candidate closest to s, when one is close enough to
// be the likely intent of a typo: within an edit distance of a third of its
// length (at least 1, at most 3), case-insensitively. It returns "" when
// none is.
func Suggest(s string, candidates []string) string {
	best, bestD := "", 0
	ls := strings.ToLower(s)
	for _, c := range candidates {
		d := editDistance(ls, strings.ToLower(c))
		limit := min(max(len(c)/3, 1), 3)
		if d <= limit && (best == "" || d < bestD) {
			best, bestD = c, d
		}
	}
	return best
}

// didYouMean is "; did you mean X?" for Suggest's answer, or "".
func didYouMean(s string, candidates []string) string {
	if m := Suggest(s, candidates); m != "" && m != s {
		return "; did you mean " + m + "?"
	}
	return ""
}

// editDistance is the optimal string alignment distance between a and b
// (insertions, deletions, substitutions and transpositions of neighbours),
// on bytes: keys and variable names are ASCII. Inputs are short names, so
// the quadratic table is small; a and b are cut at 64 bytes to bound it.
func editDistance(a, b string) int {
	a, b = a[:min(len(a), 64)], b[:min(len(b), 64)]
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
