// Command usersig is the offline operator tool: it mints, verifies and
// decodes UserSigs and PrivateMapKeys with a key on this machine, no server
// involved.
//
//	usersig gen    --sdkappid N --key-file F --user-id U [--ttl 4320h] [--at UNIX] [--room-id N | --room-str S] [--privilege P]
//	usersig verify --sdkappid N --key-file F [--key-file F2 ...] --user-id U [--at UNIX] [TICKET | -]
//	usersig decode [TICKET | -]
//
// The key comes from --key-file or the USERSIG_KEY environment variable,
// never from the command line. A ticket given as "-" or not at all is read
// from standard input, which keeps it out of the process list.
//
// Exit status: 0 success (verify: the ticket is VALID); 1 verify found the
// ticket not valid, or decode found it malformed; 2 usage error, reported
// in one line on standard error. A usage error names a flag or an
// argument's position ("argument 3"), never an argument: a key or a ticket
// put in the wrong place stays out of terminals and CI logs.
//
// decode prints every field of a ticket, unverified, and its kind:
// TICKET_KIND_USER_SIG, TICKET_KIND_PRIVATE_MAP_KEY or
// TICKET_KIND_OTHER_USER_BUF. Times up to 9999-12-31T23:59:59Z print; a
// ticket with a later TLS.time or TLS.time + TLS.expire is malformed.
package main

import (
	"os"

	"github.com/usersig/usersig/cmd/usersig/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}
