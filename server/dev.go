package server

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// DevSDKAppID is the app of the --dev config.
const DevSDKAppID = 1400000000

// DevConfig is the embedded default that `usersigd --dev` runs: one app
// with the given key, one caller "dev" holding the given token and allowed
// everything, listening on loopback only.
func DevConfig(key []byte, token string) *Config {
	sum := sha256.Sum256([]byte(token))
	return &Config{
		GRPC:    GRPCConfig{Listen: DefaultListen},
		HTTP:    HTTPConfig{Listen: "127.0.0.1:9090"},
		HTTPAPI: &HTTPAPIConfig{Listen: "127.0.0.1:8080"},
		Apps: []AppConfig{{
			SDKAppID:   DevSDKAppID,
			DefaultTTL: Dur(DefaultTTL),
			MaxTTL:     Dur(365 * 24 * time.Hour),
			Keys:       []KeyConfig{{ID: "dev", secret: key}},
		}},
		Callers: []CallerConfig{{
			Name:        "dev",
			TokenSHA256: hex.EncodeToString(sum[:]),
			Apps:        []string{"*"},
			Methods:     allMethods(),
		}},
	}
}
