package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// TestHTTPAPIStatusOfServerErrors: the service's errors that a test
// cannot provoke on demand over a real server keep their HTTP status and
// body: UNAVAILABLE (draining) is 503, the overload refusal is 429 with
// its RetryInfo as Retry-After: 1, INTERNAL is 500, DEADLINE_EXCEEDED
// (a call past grpc.max_call_duration) is 504.
func TestHTTPAPIStatusOfServerErrors(t *testing.T) {
	a := &httpAPI{json: &runtime.JSONPb{MarshalOptions: protojson.MarshalOptions{EmitDefaultValues: true}},
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x"}, []string{"reason"})}
	for _, tc := range []struct {
		err        error
		httpStatus int
		code       float64
		retryAfter string
	}{
		{errDraining, http.StatusServiceUnavailable, 14, ""},
		{errOverloaded, http.StatusTooManyRequests, 8, "1"},
		{errInternal, http.StatusInternalServerError, 13, ""},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), http.StatusGatewayTimeout, 4, ""},
	} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/v1/usersig:generate", nil)
		a.callError(r.Context(), nil, nil, w, r, tc.err)
		var body map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != tc.httpStatus || body["code"] != tc.code || body["message"] == "" {
			t.Errorf("%v: %d %s (%v), want %d with code %v", tc.err, w.Code, w.Body, err, tc.httpStatus, tc.code)
		}
		if got := w.Header().Get("Retry-After"); got != tc.retryAfter {
			t.Errorf("%v: Retry-After %q, want %q", tc.err, got, tc.retryAfter)
		}
	}
}
