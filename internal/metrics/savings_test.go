package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// value is what a scrape reads of c.
func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestSavingsSeries: the series looked up once at start are the vectors'
// own (what Result, Served and Saved count is what a scrape reads), and a
// value outside the closed sets still counts, in its own series.
func TestSavingsSeries(t *testing.T) {
	s := NewSavings(prometheus.NewRegistry(), []string{"hit", "miss"}, []string{"cache"}, []string{"docker.io"})
	s.Result("hit").Inc()
	s.Result("hit").Inc()
	s.Served("cache").Add(42)
	s.Saved("docker.io").Inc()
	s.Result("other").Inc()
	for _, c := range []struct {
		got  float64
		want float64
		name string
	}{
		{value(t, s.Results.WithLabelValues("hit")), 2, "results{hit}"},
		{value(t, s.Results.WithLabelValues("miss")), 0, "results{miss}"},
		{value(t, s.ServedBytes.WithLabelValues("cache")), 42, "served{cache}"},
		{value(t, s.PullsSaved.WithLabelValues("docker.io")), 1, "saved{docker.io}"},
		{value(t, s.Results.WithLabelValues("other")), 1, "results{other}"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}
