package signer_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/usersig/usersig/signer"
)

// vector is one line of testdata/tlssig-v2-vectors.jsonl: a ticket made by
// Tencent's official Node.js or Go library, or one re-laid the way another
// official library lays out its JSON.
type vector struct {
	SDKAppID   uint64 `json:"sdkappid"`
	Key        string `json:"key"`
	Identifier string `json:"identifier"`
	Expire     int64  `json:"expire"`
	Time       int64  `json:"time"`
	Kind       string `json:"kind"`
	RoomID     uint32 `json:"roomid"`
	RoomStr    string `json:"roomstr"`
	Privilege  uint32 `json:"privilege"`
	UserBuf64  string `json:"userbuf_b64"`
	UserSig    string `json:"usersig"`
	VerifyAt   int64  `json:"verify_at"`
	Want       string `json:"want"`
	Source     string `json:"source"`
}

var wantStatus = map[string]signer.Status{
	"ok":                  signer.Valid,
	"expired":             signer.Expired,
	"sig_mismatch":        signer.SignatureMismatch,
	"identifier_mismatch": signer.UserIDMismatch,
	"sdkappid_mismatch":   signer.SDKAppIDMismatch,
	"malformed":           signer.Malformed,
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	f, err := os.Open("../testdata/tlssig-v2-vectors.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []vector
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v vector
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("vector %d: %v", len(vs)+1, err)
		}
		vs = append(vs, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return vs
}

func mustKey(t testing.TB, secret string) *signer.Key {
	t.Helper()
	k, err := signer.NewKey([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestVectors(t *testing.T) {
	vs := loadVectors(t)
	if len(vs) != 390 {
		t.Fatalf("loaded %d vectors, want 390", len(vs))
	}
	counts := map[signer.Status]int{}
	for i, v := range vs {
		want, ok := wantStatus[v.Want]
		if !ok {
			t.Fatalf("vector %d: unknown want %q", i+1, v.Want)
		}
		key := mustKey(t, v.Key)
		got := signer.Verify(v.UserSig, v.SDKAppID, v.Identifier, []*signer.Key{key}, time.Unix(v.VerifyAt, 0))
		counts[got.Status]++
		if got.Status != want {
			t.Errorf("vector %d (%s %s): Verify = %v (%s), want %v", i+1, v.Source, v.Kind, got.Status, got.Reason, want)
			continue
		}
		if want == signer.Malformed {
			if got.Reason == "" {
				t.Errorf("vector %d: Malformed without a reason", i+1)
			}
			continue
		}
		if want == signer.SignatureMismatch {
			if got.KeyIndex != -1 || !got.IssueTime.IsZero() || got.PrivateMap != nil {
				t.Errorf("vector %d: a signature mismatch revealed %+v", i+1, got)
			}
			continue
		}
		// The MAC matched: the times and the userbuf are the ticket's own.
		if got.KeyIndex != 0 {
			t.Errorf("vector %d: KeyIndex = %d, want 0", i+1, got.KeyIndex)
		}
		if want != signer.Valid {
			continue
		}
		if got.IssueTime.Unix() != v.Time || got.ExpireTime.Unix() != v.Time+v.Expire {
			t.Errorf("vector %d: times %v..%v, want %d+%d", i+1, got.IssueTime, got.ExpireTime, v.Time, v.Expire)
		}
		checkUserBuf(t, i+1, v, got.PrivateMap)
	}
	for _, st := range []signer.Status{signer.Valid, signer.Expired, signer.SignatureMismatch, signer.UserIDMismatch, signer.SDKAppIDMismatch, signer.Malformed} {
		if counts[st] == 0 {
			t.Errorf("no vector gave %v", st)
		}
	}
}

// checkUserBuf checks what Verify decoded from a valid ticket's userbuf
// against the vector.
func checkUserBuf(t *testing.T, n int, v vector, pm *signer.PrivateMap) {
	t.Helper()
	switch v.Kind {
	case "usersig", "buf":
		if pm != nil {
			t.Errorf("vector %d (%s): decoded a PrivateMap from a plain ticket: %+v", n, v.Kind, pm)
		}
		if v.Kind == "buf" {
			d, err := signer.Decode(v.UserSig)
			if err != nil {
				t.Fatalf("vector %d: Decode: %v", n, err)
			}
			if got := base64.StdEncoding.EncodeToString(d.UserBuf); got != v.UserBuf64 {
				t.Errorf("vector %d: userbuf %s, want %s", n, got, v.UserBuf64)
			}
		}
	case "pmk", "pmkstr":
		if pm == nil {
			t.Errorf("vector %d (%s): no PrivateMap decoded", n, v.Kind)
			return
		}
		if pm.RoomID != v.RoomID || pm.RoomStr != v.RoomStr || pm.PrivilegeMap != v.Privilege ||
			pm.UserID != v.Identifier || uint64(pm.SDKAppID) != v.SDKAppID {
			t.Errorf("vector %d: PrivateMap %+v, want room %d %q privilege %d user %q app %d",
				n, pm, v.RoomID, v.RoomStr, v.Privilege, v.Identifier, v.SDKAppID)
		}
		// The official libraries read the clock twice; allow two seconds.
		if d := pm.ExpireTime.Unix() - (v.Time + v.Expire); d < -2 || d > 2 {
			t.Errorf("vector %d: PrivateMap expiry %v, want within 2s of %d", n, pm.ExpireTime, v.Time+v.Expire)
		}
	default:
		t.Errorf("vector %d: unknown kind %q", n, v.Kind)
	}
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

func formatUint(v uint64) string { return strconv.FormatUint(v, 10) }
