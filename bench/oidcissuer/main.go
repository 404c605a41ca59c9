// Command oidcissuer is the OpenID Connect issuer bench/run.sh measures
// usersigd's ID-token path with: a discovery document and a JSON Web Key
// Set on loopback, an RS256 and an ES256 key made at start, and an ID token
// signed with each.
//
//	oidcissuer -listen 127.0.0.1:0 -audience usersig-bench -sub user_0001 -out DIR
//
// It writes DIR/rs256.token and DIR/es256.token (mode 0600, valid for two
// hours), then prints "listening URL" on stdout, the issuer URL tokens
// carry, and serves until SIGTERM or SIGINT.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	aud := flag.String("audience", "usersig-bench", "the tokens' aud")
	sub := flag.String("sub", "user_0001", "the tokens' sub")
	out := flag.String("out", ".", "directory to write the tokens to")
	flag.Parse()
	if err := run(*listen, *aud, *sub, *out); err != nil {
		fmt.Fprintln(os.Stderr, "oidcissuer:", err)
		os.Exit(1)
	}
}

type key struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func run(listen, aud, sub, out string) error {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	keys := []key{{"rs1", jose.RS256, rsaKey}, {"es1", jose.ES256, ecKey}}

	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	issuer := "http://" + lis.Addr().String()
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": issuer, "jwks_uri": issuer + "/keys",
			"authorization_endpoint": issuer + "/authorize", "token_endpoint": issuer + "/token",
			"response_types_supported": []string{"id_token"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(set)
	})

	now := time.Now().Unix()
	claims, _ := json.Marshal(map[string]any{"iss": issuer, "aud": aud, "sub": sub, "iat": now, "exp": now + 7200})
	for _, k := range keys {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.kid))
		if err != nil {
			return err
		}
		jws, err := s.Sign(claims)
		if err != nil {
			return err
		}
		tok, err := jws.CompactSerialize()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, fmt.Sprintf("%s.token", map[jose.SignatureAlgorithm]string{jose.RS256: "rs256", jose.ES256: "es256"}[k.alg])), []byte(tok), 0o600); err != nil {
			return err
		}
	}

	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	fmt.Println("listening", issuer)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
		return srv.Close()
	case err := <-errc:
		return err
	}
}
