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
// # One reading per ticket
//
// A ticket that some other JSON reader could read differently is [Malformed],
// even when its MAC matches:
//
//   - anything after the document's closing brace but JSON whitespace (space,
//     tab, CR, LF): a NUL byte does not end the document;
//   - a member whose key is a TLS.* key when case is ignored but is not that
//     key exactly ("TLS.Identifier", "tls.sig", "TLS.ſig" with U+017F,
//     "TLS.sdKappid" with the Kelvin sign U+212A, the same written with \u
//     escapes): encoding/json, and readers like it, match keys
//     case-insensitively and would read that member instead. The match is
//     checked after unescaping and is wider than encoding/json's
//     (bytes.EqualFold): a rune whose upper or lower case is the letter
//     ("TLS.ıdentifier", U+0131) and underscores and dashes
//     (encoding/json/v2's case-insensitive matching ignores them) count too;
//   - a TLS.* key given twice, a nested object or array, and a TLS.time, or a
//     TLS.time + TLS.expire, after [MaxTime] (9999-12-31T23:59:59Z, the end of
//     protobuf Timestamps).
//
// The fields a ticket is read as are then its only reading. The ticket string
// is not, though: one ticket, with one MAC and one reading, can still be
// spelled in many ways, all of which verify alike:
//
//   - any bytes after the zlib stream's Adler-32 checksum (Tencent's Go
//     verifier ignores them too);
//   - the base64 padding ("_" in the ticket alphabet) present or left out,
//     and the unused low bits of the last base64 character, in the ticket
//     and in TLS.sig, set or not (encoding/base64 ignores them too);
//   - any zlib compression level or block layout;
//   - any key order, JSON whitespace and string escapes ("\u0054LS.sig" is
//     TLS.sig), and a TLS.expire of 0 left out;
//   - any number of members with other keys and scalar values, which are
//     skipped.
//
// So a ticket's string is no identity for it: do not key a deny-list or a
// replay cache on the string. Key it on what the ticket says, as [Decode]
// reports it: the app, the user, TLS.time and TLS.expire, or [Decoded].Sig,
// the MAC re-encoded in one canonical spelling.
//
// The package uses only the standard library and knows nothing of gRPC; a
// [Key] is safe for concurrent use, and minting a UserSig allocates only the
// returned string.
package signer
