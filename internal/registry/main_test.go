package registry

import (
	"testing"

	"go.uber.org/goleak"
)

// Every fill, prefetch, revalidation and upstream connection must end by
// the time a test's cleanups have run.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
