package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"
)

// TestHTTPAPIStatusOfServerErrors: the service's errors that a test
// cannot provoke on demand over a real server keep their HTTP status and
// body: UNAVAILABLE (draining) is 503, the overload refusal is 429
// without a Retry-After (it carries no RetryInfo), INTERNAL is 500.
func TestHTTPAPIStatusOfServerErrors(t *testing.T) {
	a := &httpAPI{json: &runtime.JSONPb{MarshalOptions: protojson.MarshalOptions{EmitDefaultValues: true}},
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x"}, []string{"reason"})}
	for _, tc := range []struct {
		err        error
		httpStatus int
		code       float64
	}{
		{errDraining, http.StatusServiceUnavailable, 14},
		{errOverloaded, http.StatusTooManyRequests, 8},
		{errInternal, http.StatusInternalServerError, 13},
	} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/v1/usersig:generate", nil)
		a.callError(r.Context(), nil, nil, w, r, tc.err)
		var body map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != tc.httpStatus || body["code"] != tc.code || body["message"] == "" {
			t.Errorf("%v: %d %s (%v), want %d with code %v", tc.err, w.Code, w.Body, err, tc.httpStatus, tc.code)
		}
		if w.Header().Get("Retry-After") != "" {
			t.Errorf("%v: Retry-After %q without a RetryInfo", tc.err, w.Header().Get("Retry-After"))
		}
	}
}
