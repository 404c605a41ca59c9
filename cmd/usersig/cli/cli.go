// Package cli implements the usersig command. It is a package of its own so
// that its flags and exit codes can be read apart from main.
package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/usersig/usersig/cmd/internal/safeflag"
	"github.com/usersig/usersig/server/convert"
	"github.com/usersig/usersig/signer"
)

// Exit statuses.
const (
	exitOK      = 0
	exitInvalid = 1 // verify: not VALID; decode: malformed
	exitUsage   = 2
)

// KeyEnv names the environment variable that may hold the secret key.
const KeyEnv = "USERSIG_KEY"

// DefaultTTL is the Tencent console's default lifetime: 180 days.
const DefaultTTL = 180 * 24 * time.Hour

const usage = `usage:
  usersig gen    --sdkappid N --key-file F --user-id U [--ttl 4320h] [--at UNIX] [--room-id N | --room-str S] [--privilege P]
  usersig verify --sdkappid N --key-file F [--key-file F2 ...] --user-id U [--at UNIX] [TICKET | -]
  usersig decode [TICKET | -]

The key is read from --key-file, or else from $USERSIG_KEY; never pass it as an argument.
A TICKET that is "-" or left out is read from standard input.
Exit status: 0 ok (verify: VALID), 1 not valid or malformed, 2 usage error.
`

// usageError is a mistake on the command line: one line on stderr, exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// env reads an environment variable; tests pass their own.
type env func(string) string

// Run runs the command with args (without the program name) and returns
// the exit status.
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv env) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usersig: no command: want gen, verify or decode (usersig -h for help)")
		return exitUsage
	}
	var (
		code int
		err  error
		out  bytes.Buffer // written to stdout only on success
	)
	switch args[0] {
	case "gen":
		code, err = gen(args[1:], &out, getenv)
	case "verify":
		code, err = verify(args[1:], stdin, &out, getenv)
	case "decode":
		code, err = decode(args[1:], stdin, &out)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		// Not args[0]: a key or ticket pasted in the wrong place would
		// land in a terminal or CI log.
		fmt.Fprintln(stderr, "usersig: argument 1 is not a command: want gen, verify or decode (usersig -h for help)")
		return exitUsage
	}
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	if err != nil {
		var ue usageError
		if !errors.As(err, &ue) {
			code = exitInvalid
		} else {
			code = exitUsage
		}
		fmt.Fprintf(stderr, "usersig %s: %s\n", args[0], oneLine(err.Error()))
		return code
	}
	stdout.Write(out.Bytes())
	return code
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// keyFiles collects repeated --key-file flags.
type keyFiles []string

func (k *keyFiles) String() string     { return strings.Join(*k, ",") }
func (k *keyFiles) Set(v string) error { *k = append(*k, v); return nil }

// common are the flags gen and verify share.
type common struct {
	sdkAppID uint64
	keyFiles keyFiles
	userID   string
	at       int64
}

func newFlagSet(name string, c *common) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Uint64Var(&c.sdkAppID, "sdkappid", 0, "the app's SDKAppID")
	fs.Var(&c.keyFiles, "key-file", "a file holding the app's secret key (verify: repeat for several keys)")
	fs.StringVar(&c.userID, "user-id", "", "the UserID")
	fs.Int64Var(&c.at, "at", -1, "the time, Unix seconds (default now)")
	return fs
}

// valueRules say what a flag's value must be, for safeflag.Parse's errors.
var valueRules = map[string]string{
	"sdkappid":  "not a valid number",
	"at":        "not a valid number of Unix seconds",
	"ttl":       "not a valid duration (such as 4320h or 15552000s)",
	"room-id":   "not a valid number",
	"privilege": "not a valid number",
}

// parse is safeflag.Parse for a command's arguments: the command is
// argument 1. Its errors are usage errors.
func parse(fs *flag.FlagSet, args []string) ([]safeflag.Arg, error) {
	rest, err := safeflag.Parse(fs, args, 2, valueRules)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return nil, usageError{err.Error()}
	}
	return rest, err
}

// check validates what gen and verify both need, in the order a user
// would fix it.
func (c *common) check() error {
	if c.sdkAppID == 0 {
		return usagef("--sdkappid is required")
	}
	if err := signer.ValidateSDKAppID(c.sdkAppID); err != nil {
		return usagef("--sdkappid %s", signer.RuleSDKAppID)
	}
	if c.userID == "" {
		return usagef("--user-id is required")
	}
	if err := signer.ValidateUserID(c.userID); err != nil {
		return usagef("--user-id %s", signer.RuleUserID)
	}
	if c.at < -1 || c.at > math.MaxUint32 {
		return usagef("--at must be a Unix time from 0 to 4294967295")
	}
	return nil
}

func (c *common) now() time.Time {
	if c.at >= 0 {
		return time.Unix(c.at, 0)
	}
	return time.Now()
}

// keys loads the keys from --key-file, or else from $USERSIG_KEY, with the
// ids verify reports: the file names, or the variable's name.
func (c *common) keys(getenv env) ([]*signer.Key, []string, error) {
	var secrets, ids []string
	for _, f := range c.keyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, usagef("--key-file: %v", errors.Unwrap(err))
		}
		secrets, ids = append(secrets, string(b)), append(ids, f)
	}
	if len(secrets) == 0 {
		s := getenv(KeyEnv)
		if s == "" {
			return nil, nil, usagef("no key: pass --key-file or set %s", KeyEnv)
		}
		secrets, ids = append(secrets, s), append(ids, KeyEnv)
	}
	keys := make([]*signer.Key, len(secrets))
	for i, s := range secrets {
		// A key file usually ends in a newline; the key never does.
		k, err := signer.NewKey([]byte(strings.TrimSpace(s)))
		if err != nil {
			return nil, nil, usagef("the key in %s is empty", ids[i])
		}
		keys[i] = k
	}
	return keys, ids, nil
}

func gen(args []string, out io.Writer, getenv env) (int, error) {
	var (
		c         common
		ttl       time.Duration
		roomID    uint64
		roomStr   string
		privilege uint64
	)
	fs := newFlagSet("gen", &c)
	fs.DurationVar(&ttl, "ttl", DefaultTTL, "how long the ticket is valid, whole seconds")
	fs.Uint64Var(&roomID, "room-id", 0, "mint a PrivateMapKey for this numeric room")
	fs.StringVar(&roomStr, "room-str", "", "mint a PrivateMapKey for this string room")
	fs.Uint64Var(&privilege, "privilege", signer.PrivilegeAll, "the PrivateMapKey's privilege map, 1 to 255")
	rest, err := parse(fs, args)
	if err != nil {
		return 0, err
	}
	if len(rest) > 0 {
		// By position: what is there may be a secret.
		return 0, usagef("argument %d is unexpected: gen takes only flags", rest[0].Pos)
	}
	if err := c.check(); err != nil {
		return 0, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	pmk := set["room-id"] || set["room-str"]
	switch {
	case set["room-id"] && set["room-str"]:
		return 0, usagef("--room-id and --room-str exclude each other")
	case set["privilege"] && !pmk:
		return 0, usagef("--privilege needs --room-id or --room-str")
	case set["room-id"] && signer.ValidateRoomID(roomID) != nil:
		return 0, usagef("--room-id %s", signer.RuleRoomID)
	case set["room-str"] && signer.ValidateRoomStr(roomStr) != nil:
		return 0, usagef("--room-str %s", signer.RuleRoomStr)
	case signer.ValidatePrivilegeMap(privilege) != nil:
		return 0, usagef("--privilege %s", signer.RulePrivilegeMap)
	}
	keys, _, err := c.keys(getenv)
	if err != nil {
		return 0, err
	}
	var is signer.Issued
	if pmk {
		is, err = keys[0].PrivateMapKey(c.sdkAppID, c.userID, ttl, signer.Room{ID: uint32(roomID), Str: roomStr}, uint32(privilege), c.now())
	} else {
		is, err = keys[0].UserSig(c.sdkAppID, c.userID, ttl, c.now())
	}
	var fe *signer.FieldError
	if errors.As(err, &fe) {
		return 0, usagef("--%s %s", strings.ReplaceAll(fe.Field, "_", "-"), fe.Rule)
	}
	if err != nil {
		return 0, err
	}
	fmt.Fprintln(out, is.Ticket)
	return exitOK, nil
}

// readTicket takes the ticket from the one argument, or from stdin when
// that is "-" or missing.
func readTicket(args []safeflag.Arg, stdin io.Reader) (string, error) {
	switch {
	case len(args) > 1:
		return "", usagef("argument %d is a second ticket: want one ticket", args[1].Pos)
	case len(args) == 1 && args[0].Val != "-":
		return strings.TrimSpace(args[0].Val), nil
	}
	b, err := io.ReadAll(io.LimitReader(stdin, signer.MaxTicketLen*2))
	if err != nil {
		return "", usagef("reading the ticket from standard input: %v", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", usagef("no ticket: pass it as an argument or on standard input")
	}
	return t, nil
}

func verify(args []string, stdin io.Reader, out io.Writer, getenv env) (int, error) {
	var c common
	fs := newFlagSet("verify", &c)
	rest, err := parse(fs, args)
	if err != nil {
		return 0, err
	}
	if err := c.check(); err != nil {
		return 0, err
	}
	keys, ids, err := c.keys(getenv)
	if err != nil {
		return 0, err
	}
	ticket, err := readTicket(rest, stdin)
	if err != nil {
		return 0, err
	}
	r := signer.Verify(ticket, c.sdkAppID, c.userID, keys, c.now())
	b, err := protojson.MarshalOptions{EmitDefaultValues: true}.Marshal(convert.VerifyResponse(r, ids))
	if err != nil {
		return 0, err
	}
	if err := writeJSON(out, b); err != nil {
		return 0, err
	}
	if !r.Valid() {
		return exitInvalid, nil
	}
	return exitOK, nil
}

// writeJSON writes one JSON document on one line. verify prints what
// grpcurl -emit-defaults prints for the VerifyUserSig response. protojson's spacing
// varies from build to build on purpose; compacting makes it stable.
func writeJSON(out io.Writer, b []byte) error {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := out.Write(buf.Bytes())
	return err
}

// decoded is what decode prints; the names follow the API's JSON.
type decoded struct {
	Version       string          `json:"version"`
	Identifier    string          `json:"identifier"`
	SDKAppID      uint64          `json:"sdkAppId"`
	Time          int64           `json:"time"`
	Expire        int64           `json:"expire"`
	IssueTime     string          `json:"issueTime"`
	ExpireTime    string          `json:"expireTime"`
	Sig           string          `json:"sig"`
	Kind          string          `json:"kind"` // named as usersig.v1.TicketKind names it
	UserBuf       string          `json:"userbuf,omitempty"`
	PrivateMapKey *decodedPrivMap `json:"privateMapKey,omitempty"`
}

type decodedPrivMap struct {
	UserID       string `json:"userId"`
	SDKAppID     uint32 `json:"sdkAppId"`
	RoomID       uint32 `json:"roomId,omitempty"`
	RoomStr      string `json:"roomStr,omitempty"`
	PrivilegeMap uint32 `json:"privilegeMap"`
	ExpireTime   string `json:"expireTime"`
	AccountType  uint32 `json:"accountType"`
}

func decode(args []string, stdin io.Reader, out io.Writer) (int, error) {
	fs := flag.NewFlagSet("decode", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	rest, err := parse(fs, args)
	if err != nil {
		return 0, err
	}
	ticket, err := readTicket(rest, stdin)
	if err != nil {
		return 0, err
	}
	d, err := signer.Decode(ticket)
	if err != nil {
		return 0, fmt.Errorf("malformed: %w", err)
	}
	v := decoded{
		Version:    d.Version,
		Identifier: d.Identifier,
		SDKAppID:   d.SDKAppID,
		Time:       d.IssueTime.Unix(),
		Expire:     d.Expire,
		IssueTime:  d.IssueTime.Format(time.RFC3339),
		ExpireTime: d.ExpireTime.Format(time.RFC3339),
		Sig:        d.Sig,
		Kind:       "TICKET_KIND_" + d.Kind.String(),
	}
	if d.UserBuf != nil {
		v.UserBuf = base64.StdEncoding.EncodeToString(d.UserBuf)
	}
	if pm := d.PrivateMap; pm != nil {
		v.PrivateMapKey = &decodedPrivMap{UserID: pm.UserID, SDKAppID: pm.SDKAppID, RoomID: pm.RoomID, RoomStr: pm.RoomStr,
			PrivilegeMap: pm.PrivilegeMap, ExpireTime: pm.ExpireTime.Format(time.RFC3339), AccountType: pm.AccountType}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	return exitOK, writeJSON(out, b)
}
