package registry

// The constant header values of every answer, shared by all responses
// instead of a new []string per header per request (what Header.Set
// allocates; issue 28). They are set by their canonical keys (a test checks
// every key a hit's answer carries) and never modified in place: net/http
// only reads them, and Header.Add on one of these keys appends to a slice
// whose capacity is its length, so it copies.
var (
	apiVersionValue  = []string{"registry/2.0"}
	nosniffValue     = []string{"nosniff"}
	octetStreamValue = []string{"application/octet-stream"}
	bytesValue       = []string{"bytes"}
	immutableValue   = []string{"max-age=31536000"}
)
