//go:build tools

// Package tools records the suite this module pins.
package tools

import _ "github.com/opencontainers/distribution-spec/conformance"
