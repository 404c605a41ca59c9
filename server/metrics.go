package server

import (
	"runtime"
	"strconv"
	"sync"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/usersig/usersig/signer"
)

// metrics are the server's Prometheus metrics: go-grpc-middleware's
// standard gRPC server metrics and the domain counters. No label ever holds
// a user id, a token or a ticket; caller names and app ids come from the
// config, so every label's values are bounded.
type metrics struct {
	registry      *prometheus.Registry
	grpc          *grpcprom.ServerMetrics
	tickets       *prometheus.CounterVec
	verifications *prometheus.CounterVec
	authFailures  *prometheus.CounterVec
	rateLimits    *prometheus.CounterVec
	userRates     *prometheus.CounterVec
	userEvictions *prometheus.CounterVec
	oidcFetches   *prometheus.CounterVec
	reloads       *prometheus.CounterVec
	generation    prometheus.Gauge
	ready         prometheus.Gauge
	stale         staleness
}

// staleness backs usersig_config_stale: 1 while a reload has been refused
// and the files on disk differ from the config in force. A refused
// reload sets refused; a successful one clears it. The files are compared
// when /metrics is read, so the gauge also falls to 0 when the operator
// puts back the files in force without a reload (reload.interval 0s,
// SIGHUP only); refused is then cleared, so later edits that no reload
// has yet tried do not count as stale.
type staleness struct {
	mu      sync.Mutex
	refused bool
	// differ reports whether the files on disk differ from the config in
	// force; set by the server at start.
	differ func() bool
}

func (st *staleness) value() float64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.refused || st.differ == nil {
		return 0
	}
	if !st.differ() {
		st.refused = false
		return 0
	}
	return 1
}

func newMetrics(version string) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		grpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets([]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .5, 1}),
		)),
		tickets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usersig_tickets_issued_total",
			Help: "Tickets minted, by app, caller and kind (usersig or private_map_key).",
		}, []string{"sdk_app_id", "caller", "kind"}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usersig_verifications_total",
			Help: "VerifyUserSig outcomes, by app and status.",
		}, []string{"sdk_app_id", "status"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usersig_auth_failures_total",
			Help: "Calls refused for who made them, by reason: no_token, not_bearer, unknown_token, unknown_cert, cert_token_mismatch, method_denied, app_denied, user_id_denied, private_map_key_denied; for ID tokens id_token_malformed, id_token_algorithm, id_token_signature, id_token_unknown_key, id_token_issuer, id_token_expired, id_token_not_yet_valid, id_token_claims, id_token_user_id, issuer_unavailable.",
		}, []string{"reason"}),
		rateLimits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usersig_rate_limited_total",
			Help: "Calls refused because the caller was over its rate, by caller.",
		}, []string{"caller"}),
		userRates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usersig_rate_per_user_limited_total",
			Help: "Calls refused because the user id was over its caller's rate_per_user, by caller.",
		}, []string{"caller"}),
		userEvictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usersig_rate_per_user_evicted_total",
			Help: "Users' rate_per_user buckets dropped, not yet full, to keep the caller's table at max_users, by caller.",
		}, []string{"caller"}),
		oidcFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usersig_oidc_fetches_total",
			Help: "Fetches from OpenID Connect issuers, by issuer, document (discovery or jwks) and result (ok or error).",
		}, []string{"issuer", "document", "result"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usersig_config_reloads_total",
			Help: "Config reloads, by result (success or failure; a failure keeps the old config).",
		}, []string{"result"}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "usersig_config_generation",
			Help: "Generation of the config in force: 1 at start, plus one per successful reload.",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "usersig_ready",
			Help: "1 while the server is ready to serve, 0 while it starts or drains.",
		}),
	}
	stale := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "usersig_config_stale",
		Help: "1 while a reload has been refused and the config or key files on disk differ from the config in force, else 0.",
	}, m.stale.value)
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "usersig_build_info",
		Help: "Always 1; the labels say what is running.",
	}, []string{"version", "go_version"})
	buildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	m.registry.MustRegister(m.grpc, m.tickets, m.verifications, m.authFailures, m.rateLimits, m.userRates, m.userEvictions, m.oidcFetches, m.reloads,
		m.generation, m.ready, stale, buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Series that alerts watch exist from the start, at 0.
	for _, r := range []string{authNoToken, authNotBearer, authUnknownToken, authUnknownCert, authCertTokenMismatch, authMethod, authApp, authUserID} {
		m.authFailures.WithLabelValues(r)
	}
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	return m
}

// verifiedCounter is usersig_verifications_total for an app and status.
func (m *metrics) verifiedCounter(app uint64, st signer.Status) prometheus.Counter {
	return m.verifications.WithLabelValues(strconv.FormatUint(app, 10), st.String())
}

// issuedCounter is usersig_tickets_issued_total for an app, caller and kind.
func (m *metrics) issuedCounter(app uint64, caller string, kind ticketKind) prometheus.Counter {
	return m.tickets.WithLabelValues(strconv.FormatUint(app, 10), caller, kind.String())
}

func (m *metrics) authFailure(reason string) { m.authFailures.WithLabelValues(reason).Inc() }

func (m *metrics) rateLimited(caller string) { m.rateLimits.WithLabelValues(caller).Inc() }

func (m *metrics) userRateLimited(caller string) { m.userRates.WithLabelValues(caller).Inc() }

func (m *metrics) userEvicted(caller string) { m.userEvictions.WithLabelValues(caller).Inc() }

func (m *metrics) oidcFetched(issuer, document string, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.oidcFetches.WithLabelValues(issuer, document, result).Inc()
}

// watchStale gives usersig_config_stale the function that compares the
// files on disk with the config in force.
func (m *metrics) watchStale(differ func() bool) {
	m.stale.mu.Lock()
	defer m.stale.mu.Unlock()
	m.stale.differ = differ
}

func (m *metrics) reloaded(ok bool, generation uint64) {
	m.stale.mu.Lock()
	m.stale.refused = !ok
	m.stale.mu.Unlock()
	if !ok {
		m.reloads.WithLabelValues("failure").Inc()
		return
	}
	m.reloads.WithLabelValues("success").Inc()
	m.generation.Set(float64(generation))
}
