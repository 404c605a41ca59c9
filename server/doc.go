// Package server is usersigd's gRPC service: the UserSigService handlers,
// caller authentication and per-caller policy, and the interceptor chain
// around them. The ticket format itself lives in package signer.
package server
