// Package signer mints and verifies the login tickets of Tencent Cloud IM and
// TRTC: the UserSig (TLS-Sig-API v2) and the TRTC PrivateMapKey.
//
// Tickets minted here are accepted by every Tencent SDK: the JSON document is
// laid out as Tencent's Go library lays it out and wrapped in a zlib "stored"
// stream (compression level 0, the Go library's default), which every zlib
// reader accepts. Verification accepts the output of all seven official
// libraries: any key order, whitespace and JSON escapes, zlib levels 0 to 9,
// a missing TLS.expire, and the userbuf before or after the signature.
//
// Verification differs from the official verifiers where they are unsafe: a
// ticket that cannot be decoded is reported as [Malformed] rather than as some
// other mismatch, MACs are compared in constant time, the inflated size is
// capped, and nothing about a forged ticket is reported beyond
// [SignatureMismatch].
//
// The package uses only the standard library and knows nothing of gRPC; a
// [Key] is safe for concurrent use, and minting a UserSig allocates only the
// returned string.
package signer
