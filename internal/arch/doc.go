// Package arch holds no code: its test keeps the import walls written in
// docs/architecture.md true, by comparing them with what `go list` says
// each package imports.
package arch
