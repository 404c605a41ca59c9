package server

import (
	"strings"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
)

// The UserSigService methods, read from the generated service descriptor:
// an RPC added to the proto is in this table, and so in the config's
// validation, the authorization check and --dev's caller, without another
// list to keep.
const (
	MethodGenerateUserSig       = "GenerateUserSig"
	MethodVerifyUserSig         = "VerifyUserSig"
	MethodGeneratePrivateMapKey = "GeneratePrivateMapKey"
)

// methodSet is a set of UserSigService methods, a bit each.
type methodSet uint32

// method is one UserSigService method.
type method struct {
	name string // as the config names it: GenerateUserSig
	full string // as gRPC names it: /usersig.v1.UserSigService/GenerateUserSig
	bit  methodSet
}

var (
	serviceMethods []method
	methodByName   = map[string]method{}
	methodByFull   = map[string]method{}
)

func init() {
	d := usersigv1.UserSigService_ServiceDesc
	names := make([]string, 0, len(d.Methods)+len(d.Streams))
	for _, m := range d.Methods {
		names = append(names, m.MethodName)
	}
	for _, s := range d.Streams {
		names = append(names, s.StreamName)
	}
	for i, name := range names {
		m := method{name: name, full: "/" + d.ServiceName + "/" + name, bit: 1 << i}
		serviceMethods = append(serviceMethods, m)
		methodByName[m.name], methodByFull[m.full] = m, m
	}
}

// methodNames lists the methods for messages: "A, B or C".
func methodNames(conj string) string {
	names := make([]string, len(serviceMethods))
	for i, m := range serviceMethods {
		names[i] = m.name
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " " + conj + " " + names[len(names)-1]
}

// allMethods is every method's name, as a config lists them.
func allMethods() []string {
	out := make([]string, len(serviceMethods))
	for i, m := range serviceMethods {
		out[i] = m.name
	}
	return out
}
