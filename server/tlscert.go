package server

import (
	"crypto/tls"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
)

// certReloader serves the gRPC listener's certificate and reads it again
// when cert_file or key_file changes, so that a certificate renewed in
// place (cert-manager rewrites its Secret, Kubernetes swaps the mounted
// files) is served without a restart. The files are checked at most every
// reload.interval, when a handshake asks for the certificate, and at every
// Reload (SIGHUP). A pair that fails to load, or that breaks the rules of
// key files (trustProblems), is logged and the one in force stays.
type certReloader struct {
	field             string // the config section, for messages: grpc.tls
	certFile, keyFile string
	every             time.Duration // 0: only at Reload
	log               *zap.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamps  [2]fileStamp
	checked time.Time
}

func newCertReloader(field, certFile, keyFile string, every time.Duration, log *zap.Logger) (*certReloader, error) {
	r := &certReloader{field: field, certFile: certFile, keyFile: keyFile, every: every, log: log}
	stamps := r.stamp()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, &ConfigError{Problems: []string{field + ": " + oneLine(err.Error())}}
	}
	r.cert, r.stamps, r.checked = &cert, stamps, time.Now()
	return r, nil
}

func (r *certReloader) stamp() [2]fileStamp {
	var s [2]fileStamp
	for i, p := range []string{r.certFile, r.keyFile} {
		fi, _ := os.Stat(p)
		s[i] = fileStamp{path: p, info: fi}
	}
	return s
}

// getCertificate is tls.Config.GetCertificate.
func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.every > 0 && time.Since(r.checked) >= r.every {
		r.reloadLocked()
	}
	return r.cert, nil
}

// reload reads the pair again if either file changed.
func (r *certReloader) reload() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reloadLocked()
}

func (r *certReloader) reloadLocked() {
	r.checked = time.Now()
	if !r.stamps[0].changed() && !r.stamps[1].changed() {
		return
	}
	stamps := r.stamp() // before reading: a change while reading counts
	var problems []string
	for i, st := range stamps {
		if st.info != nil {
			problems = append(problems, trustProblems(st.path, st.info, i == 1)...)
		}
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		problems = append(problems, oneLine(err.Error()))
	}
	r.stamps = stamps // do not retry the same files on every handshake
	if len(problems) > 0 {
		for _, p := range problems {
			r.log.Error(r.field+": the renewed certificate was refused; the one in force stays", zap.String("problem", p))
		}
		return
	}
	r.cert = &cert
	r.log.Info(r.field+": serving the renewed certificate", zap.Time("not_after", notAfter(&cert)))
}

func notAfter(c *tls.Certificate) time.Time {
	if c.Leaf != nil {
		return c.Leaf.NotAfter
	}
	return time.Time{}
}
