// Package server is usersigd: the usersig.v1 gRPC service, the
// authentication and per-caller policy around it, and what runs it
// (listeners, reload, metrics, health). The ticket format is package
// signer; the API's messages are package gen/usersig/v1, and
// server/convert turns a verification into its answer.
//
// # A config, from file to force
//
//	LoadConfig (config.go)  read the file by the rules of trusted files (files.go)
//	  ParseConfig           strict YAML into Config (config.go)
//	  Compile               on a copy: settings and defaults (validate.go),
//	                        apps and their keys, callers and their options
//	                        (compile.go; the rate option is ratelimit.go, the
//	                        methods a caller may call are methods.go, the
//	                        oidc section oidc.go, private_map_key pmk.go)
//	                        into a policy (policy.go); rate_limits, which
//	                        applies at start, is sharedrate.go
//	reloader.install        binds its metrics, audit loggers and OIDC issuers
//	                        (issuer.go, kept across reloads) and swaps it in
//	                        (reload.go); SIGHUP and changed files reload
//
// A policy never changes once built: a reload builds another, and calls
// in flight finish under the one they started with.
//
// # A call, from headers to audit line
//
//	admission.tapHandle (tap.go)  from the headers alone: refuse a caller's
//	                              call without valid credentials, take a
//	                              slot, set the deadline; an ID token is
//	                              known there if verified before (oidc.go),
//	                              else it takes a slot of a pool of its own
//	interceptors (server.go)      call info, metrics (metrics.go), the call
//	                              log line (calllog.go), panic recovery
//	service.authenticate (auth.go) the caller (verifying an ID token not
//	                              verified yet), its rate (in Redis with
//	                              rate_limits, sharedrate.go), the method
//	service handlers (service.go) the user id (an OIDC caller's is its
//	                              token's), the app, the user id, the ttl (and
//	                              a PrivateMapKey's room and privileges, pmk.go); then the
//	                              caller's rate_per_user for the user id
//	                              (ratelimit.go), the signer, the counter
//	                              and the audit line
//
// The HTTP/JSON API (httpapi.go) is grpc-gateway calling the service over
// an in-memory connection to a second grpc.Server built with the same tap
// and interceptors, so an HTTP call takes the path above from its first
// line; the gateway passes on only Authorization, the trace context and
// the HTTP client's address.
//
// Errors a client sees are built in errors.go (and ratelimit.go): each
// names the field or rule and never holds a key, a token or a ticket.
// Server (server.go) wires the parts and runs them: listeners, health,
// readiness, draining; tlscert.go serves a renewed certificate and
// tracing.go is OpenTelemetry when configured.
package server
