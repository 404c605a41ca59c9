package server

// The files the server takes orders and keys from: the rules they must
// keep (readTrusted, trustProblems), the digest that tells whether they
// changed since a config was loaded, and the stamps the watcher compares.

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"reflect"
)

// readTrusted reads a file the server takes orders or keys from: the
// config file or a key file. It must be a regular file that no one but
// its owner may write (group-writable is refused too), owned by root or
// by the server's user; a secret must also not be readable by others.
// The rules are checked on the opened file, so the file read is the file
// checked. A symlink is followed (Kubernetes mounts ConfigMaps and
// Secrets through ..data symlinks): what counts is the file it leads to.
// The directories on the way are not checked; see trustProblems.
func readTrusted(path string, secret bool) ([]byte, []string) {
	// Stat before opening, so that a FIFO is refused rather than waited on.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, []string{pathError(err)}
	}
	if !fi.Mode().IsRegular() {
		return nil, []string{path + " is not a regular file"}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, []string{pathError(err)}
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, []string{pathError(err)}
	}
	if !fi.Mode().IsRegular() {
		return nil, []string{path + " is not a regular file"}
	}
	if problems := trustProblems(path, fi, secret); problems != nil {
		return nil, problems
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, []string{pathError(err)}
	}
	return b, nil
}

// trustProblems says why a file the server trusts must be refused, one
// line per rule it breaks, or nil. Another local user who may write the
// config can add a caller, and one who may write a key file can make
// tickets signed with a key of his own verify. Only the file is checked,
// not the directories that lead to it: a file swapped in through a
// writable directory is owned by whoever swapped it, which the owner rule
// refuses; and Kubernetes shows the directories of ConfigMap and Secret
// volumes as mode 0777 (they are mounted read-only), so a rule on
// directories would refuse every pod.
func trustProblems(path string, fi os.FileInfo, secret bool) []string {
	var out []string
	mode := fi.Mode().Perm()
	if secret && mode&0o004 != 0 {
		out = append(out, fmt.Sprintf("%s is readable by others (mode %04o); run chmod o-rwx on it", path, mode))
	}
	if mode&0o022 != 0 {
		out = append(out, fmt.Sprintf("%s is writable by its group or others (mode %04o); run chmod go-w on it", path, mode))
	}
	if uid, ok := fileOwner(fi); ok && uid != 0 && int64(uid) != int64(os.Geteuid()) {
		out = append(out, fmt.Sprintf("%s is owned by uid %d, neither root nor the server's user (uid %d)", path, uid, os.Geteuid()))
	}
	return out
}

// fileOwner is the uid that owns a file, where the system has one: the
// Uid of syscall.Stat_t on every Unix. It is read by name so that this
// package, which cmd/usersig imports, still builds where there is none.
func fileOwner(fi os.FileInfo) (uint32, bool) {
	v := reflect.ValueOf(fi.Sys())
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return 0, false
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return 0, false
	}
	uid := v.FieldByName("Uid")
	if !uid.IsValid() || !uid.CanUint() {
		return 0, false
	}
	return uint32(uid.Uint()), true
}

func pathError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Path + ": " + pe.Err.Error()
	}
	return err.Error()
}

// inputDigest is a digest of what a config was loaded from: the config
// file and every key file, path and content. It lets the server tell
// whether the files on disk still say what the config in force says
// (usersig_config_stale) without keeping a copy of any key.
type inputDigest struct{ h hash.Hash }

func newInputDigest() *inputDigest { return &inputDigest{h: sha256.New()} }

func (d *inputDigest) add(path string, content []byte) {
	var n [16]byte
	binary.BigEndian.PutUint64(n[:8], uint64(len(path)))
	binary.BigEndian.PutUint64(n[8:], uint64(len(content)))
	d.h.Write(n[:])
	d.h.Write([]byte(path))
	d.h.Write(content)
}

func (d *inputDigest) sum() (out [sha256.Size]byte) {
	d.h.Sum(out[:0])
	return out
}

// diskDigest digests the config file at path and the key files it names
// as they are now, as LoadConfig digests them; ok is false when they
// cannot be read. Nothing is validated: it only tells whether the files
// changed.
func diskDigest(path string) (sum [sha256.Size]byte, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return sum, false
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return sum, false
	}
	d := newInputDigest()
	d.add(path, b)
	for _, a := range cfg.Apps {
		for _, k := range a.Keys {
			if k.File == "" || k.Env != "" {
				continue
			}
			kb, err := os.ReadFile(k.File)
			if err != nil {
				return sum, false
			}
			d.add(k.File, kb)
		}
	}
	return d.sum(), true
}

// fileStamp is what a file looked like when the config was loaded.
type fileStamp struct {
	path string
	info os.FileInfo // nil when the file could not be read
}

// stampFiles stamps the config file and every key file and OIDC ca_file it names. A
// Kubernetes ConfigMap or Secret update swaps a symlink; Stat follows it,
// so the stamp changes.
func stampFiles(configPath string, cfg *Config) []fileStamp {
	paths := []string{configPath}
	for _, a := range cfg.Apps {
		for _, k := range a.Keys {
			if k.File != "" {
				paths = append(paths, k.File)
			}
		}
	}
	for _, c := range cfg.Callers {
		if c.OIDC != nil && c.OIDC.CAFile != "" {
			paths = append(paths, c.OIDC.CAFile)
		}
	}
	out := make([]fileStamp, 0, len(paths))
	for _, p := range paths {
		if p == "" {
			continue
		}
		fi, _ := os.Stat(p)
		out = append(out, fileStamp{path: p, info: fi})
	}
	return out
}

// merge is the stamps of pre and of the files of later that pre lacks.
func merge(pre, later []fileStamp) []fileStamp {
	out := append([]fileStamp(nil), pre...)
	seen := map[string]bool{}
	for _, f := range pre {
		seen[f.path] = true
	}
	for _, f := range later {
		if !seen[f.path] {
			seen[f.path] = true
			out = append(out, f)
		}
	}
	return out
}

// restamp stamps the same files again.
func restamp(old []fileStamp) []fileStamp {
	out := make([]fileStamp, 0, len(old))
	seen := map[string]bool{}
	for _, f := range old {
		if !seen[f.path] {
			seen[f.path] = true
			fi, _ := os.Stat(f.path)
			out = append(out, fileStamp{path: f.path, info: fi})
		}
	}
	return out
}

func (f fileStamp) changed() bool {
	fi, err := os.Stat(f.path)
	switch {
	case (err != nil) != (f.info == nil):
		return true
	case err != nil:
		return false
	}
	if !os.SameFile(fi, f.info) || !fi.ModTime().Equal(f.info.ModTime()) || fi.Size() != f.info.Size() || fi.Mode() != f.info.Mode() {
		return true
	}
	// A chown fixes a file the owner rule refused, and changes nothing else.
	was, _ := fileOwner(f.info)
	is, _ := fileOwner(fi)
	return was != is
}
