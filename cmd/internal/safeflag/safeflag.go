// Package safeflag parses command lines with package flag's FlagSets but
// never repeats what it rejects: an argument put in the wrong place may be
// a key, a token or a ticket. usersig and usersigd both parse with it.
package safeflag

import (
	"flag"
	"fmt"
	"strings"
)

// Arg is an argument that is no flag, and its position on the command
// line.
type Arg struct {
	Pos int // 1 is the first argument after the program's name
	Val string
}

// Parse sets the flags of fs from args, where flags may come before
// or after the other arguments and "--" ends them, and returns the other
// arguments with their positions; args[0] is at position first. It is
// flag.FlagSet.Parse without its messages, which repeat what they reject:
// an argument put in the wrong place may be a key or a ticket, and a
// "flag" a secret starting with '-'. Its errors name a defined flag or a
// position, never a value: rules says, by flag name, what its value must
// be ("not a valid number"). -h and -help, unless defined, give
// flag.ErrHelp.
func Parse(fs *flag.FlagSet, args []string, first int, rules map[string]string) ([]Arg, error) {
	var rest []Arg
	for i := 0; i < len(args); i++ {
		a, pos := args[i], first+i
		if a == "--" {
			for j, v := range args[i+1:] {
				rest = append(rest, Arg{pos + 1 + j, v})
			}
			break
		}
		if len(a) < 2 || a[0] != '-' {
			rest = append(rest, Arg{pos, a}) // "-" too: standard input
			continue
		}
		name := a[1:]
		if name[0] == '-' {
			name = name[1:]
		}
		value, hasValue := "", false
		if j := strings.IndexByte(name, '='); j >= 0 {
			name, value, hasValue = name[:j], name[j+1:], true
		}
		if name == "" || name[0] == '-' {
			return nil, fmt.Errorf("argument %d is not a known flag", pos)
		}
		f := fs.Lookup(name)
		if f == nil {
			if name == "h" || name == "help" {
				return nil, flag.ErrHelp
			}
			return nil, fmt.Errorf("argument %d is not a known flag", pos)
		}
		// name is now a defined flag's: it may be named.
		isBool := false
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok {
			isBool = b.IsBoolFlag()
		}
		switch {
		case isBool && !hasValue:
			value = "true"
		case !hasValue && i+1 < len(args):
			i++
			value = args[i]
		case !hasValue:
			return nil, fmt.Errorf("--%s needs a value", name)
		}
		if err := fs.Set(name, value); err != nil {
			rule, ok := rules[name]
			switch {
			case isBool:
				rule = "not true or false"
			case !ok:
				rule = "not a valid value"
			}
			return nil, fmt.Errorf("--%s: %s", name, rule)
		}
	}
	return rest, nil
}
