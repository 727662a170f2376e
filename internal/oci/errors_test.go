package oci

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestErrorWrite(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		err    *Error
		method string
		status int
	}{
		{name: "blob unknown", err: Errorf(ErrBlobUnknown, "no blob"), method: "GET", status: 404},
		{name: "unsupported", err: Errorf(ErrUnsupported, "read-only mirror"), method: "PUT", status: 405},
		{name: "429 head", err: &Error{Code: ErrTooManyRequests, Message: "slow down", RetryAfter: "30"}, method: "HEAD", status: 429},
		{name: "override", err: &Error{Code: ErrUnknown, Message: "bad upstream", Status: 502}, method: "GET", status: 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			tt.err.Write(rec, httptest.NewRequest(tt.method, "/v2/x", nil))
			if rec.Code != tt.status {
				t.Errorf("status %d, want %d", rec.Code, tt.status)
			}
			if rec.Header().Get("Docker-Distribution-API-Version") != "registry/2.0" {
				t.Error("missing API version header")
			}
			if tt.err.RetryAfter != "" && rec.Header().Get("Retry-After") != tt.err.RetryAfter {
				t.Error("Retry-After not passed on")
			}
			if tt.method == http.MethodHead {
				if rec.Body.Len() != 0 {
					t.Error("HEAD got a body")
				}
				return
			}
			var env Envelope
			if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
				t.Fatal(err)
			}
			if len(env.Errors) != 1 || env.Errors[0].Code != tt.err.Code || env.Errors[0].Message != tt.err.Message {
				t.Errorf("envelope %+v", env)
			}
		})
	}
}
