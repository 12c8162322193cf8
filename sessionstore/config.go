package sessionstore

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/confcheck"
)

// Config is the session.store section.
type Config struct {
	Type     string         `mapstructure:"type"` // memory | memcache
	Memcache MemcacheConfig `mapstructure:"memcache"`
}

// MemcacheConfig is session.store.memcache.
type MemcacheConfig struct {
	// Servers are host:port, dns+host:port (every A/AAAA record of host,
	// each with port) or dnssrv+_service._proto.name (the SRV targets and
	// their ports).
	Servers []string `mapstructure:"servers"`
	// ResolveInterval is how often dns+ and dnssrv+ names are resolved
	// again; the ring follows the live set. 0 means the default, 10s.
	ResolveInterval time.Duration `mapstructure:"resolve_interval"`
	// Replicas is how many servers hold each record, capped at the number
	// of servers in use. 0 means the default, 2.
	Replicas     int           `mapstructure:"replicas"`
	Timeout      time.Duration `mapstructure:"timeout"`
	MaxIdleConns int           `mapstructure:"max_idle_conns"`
	TLS          TLSConfig     `mapstructure:"tls"`
}

// TLSConfig is session.store.memcache.tls: connections to memcached
// (requests, the health probe and flush_all alike) over TLS.
type TLSConfig struct {
	Enabled            bool   `mapstructure:"enabled"`
	CAFile             string `mapstructure:"ca_file"`   // PEM bundle the servers' certificates must chain to; empty: the system's
	CertFile           string `mapstructure:"cert_file"` // client certificate (PEM), with key_file, for servers that require one
	KeyFile            string `mapstructure:"key_file"`
	ServerName         string `mapstructure:"server_name"` // name the certificates must be valid for; empty: the host dialled
	InsecureSkipVerify bool   `mapstructure:"insecure_skip_verify"`
}

// Defaults of the keys whose zero value means "the default".
const (
	DefaultResolveInterval = 10 * time.Second
	DefaultReplicas        = 2
)

// Validate checks the section.
func (c Config) Validate() confcheck.Problems {
	var ps confcheck.Problems
	switch c.Type {
	case "memory":
	case "memcache":
		ps.Nest("memcache", c.Memcache.validate())
	default:
		ps.Addf("type", "must be memory or memcache, not %q", c.Type)
	}
	return ps
}

func (c MemcacheConfig) validate() confcheck.Problems {
	var ps confcheck.Problems
	if len(c.Servers) == 0 {
		ps.Addf("servers", "at least one server is required when type is memcache (host:port, dns+host:port or dnssrv+_service._proto.name)")
	}
	for _, s := range c.Servers {
		if _, err := parseServer(s); err != nil {
			ps.Addf("servers", "%v", err)
		}
	}
	if c.ResolveInterval <= 0 {
		ps.Addf("resolve_interval", "must be a positive duration such as 10s")
	}
	if c.Replicas < 1 {
		ps.Addf("replicas", "must be at least 1 (it is capped at the number of servers in use)")
	}
	if c.Timeout <= 0 {
		ps.Addf("timeout", "must be a positive duration such as 250ms")
	}
	if c.MaxIdleConns <= 0 {
		ps.Addf("max_idle_conns", "must be at least 1")
	}
	if c.TLS.Enabled {
		var tps confcheck.Problems
		_, _ = c.TLS.build(&tps)
		ps.Nest("tls", tps)
	}
	return ps
}

// Warnings are the section's start-up warnings: settings that work but
// are probably not what is wanted.
func (c Config) Warnings() []string {
	if c.Type != "memcache" {
		return nil
	}
	t := c.Memcache.TLS
	var ws []string
	if t.Enabled && t.InsecureSkipVerify {
		ws = append(ws, "session.store.memcache.tls.insecure_skip_verify is true: memcached's certificate is not checked, "+
			"so anybody on the network path can pose as memcached and read or change sessions; for tests only")
	}
	if !t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify) {
		ws = append(ws, "session.store.memcache.tls has settings but session.store.memcache.tls.enabled is false; "+
			"connections to memcached are not encrypted")
	}
	return ws
}

// build makes the client TLS configuration, recording what is wrong with
// the files in ps (keys relative to the tls section).
func (t TLSConfig) build(ps *confcheck.Problems) (*tls.Config, bool) {
	n := len(*ps)
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, // opt-in, warned about at start
	}
	if t.CAFile != "" {
		b, err := os.ReadFile(t.CAFile)
		switch {
		case err != nil:
			ps.Addf("ca_file", "cannot read CA bundle: %v", err)
		default:
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(b) {
				ps.Addf("ca_file", "%s holds no PEM certificate", t.CAFile)
			}
			cfg.RootCAs = pool
		}
	}
	switch {
	case t.CertFile == "" && t.KeyFile == "":
	case t.CertFile == "":
		ps.Addf("cert_file", "required when key_file is set")
	case t.KeyFile == "":
		ps.Addf("key_file", "required when cert_file is set")
	default:
		pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			ps.Addf("cert_file", "cannot load the client certificate and key: %v", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, len(*ps) == n
}

// serverKind is the form of a servers entry.
type serverKind uint8

const (
	staticServer serverKind = iota // host:port
	dnsServer                      // dns+host:port
	srvServer                      // dnssrv+name
)

// serverSpec is one parsed servers entry.
type serverSpec struct {
	raw  string
	kind serverKind
	host string // static and dns: the host; srv: the SRV name
	port string // static and dns
}

const serversForms = "host:port, dns+host:port or dnssrv+_service._proto.name"

// parseServer parses one servers entry.
func parseServer(s string) (serverSpec, error) {
	bad := func(why string) (serverSpec, error) {
		return serverSpec{}, fmt.Errorf("%q is not %s: %s", s, serversForms, why)
	}
	sp := serverSpec{raw: s}
	rest := s
	switch {
	case strings.HasPrefix(s, "dnssrv+"):
		sp.kind, sp.host = srvServer, strings.TrimPrefix(s, "dnssrv+")
		if sp.host == "" || strings.ContainsAny(sp.host, ":/ \t") || !validDNSName(sp.host) {
			return bad("after dnssrv+ comes an SRV name such as _memcache._tcp.memcached.default.svc.cluster.local, without a port")
		}
		return sp, nil
	case strings.HasPrefix(s, "dns+"):
		sp.kind, rest = dnsServer, strings.TrimPrefix(s, "dns+")
	case strings.Contains(s, "+"):
		return bad("the only prefixes are dns+ and dnssrv+")
	case strings.Contains(s, "://"):
		return bad("no scheme")
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		return bad("no port")
	}
	if n, perr := strconv.Atoi(port); perr != nil || n < 1 || n > 65535 {
		return bad("the port must be a number from 1 to 65535")
	}
	if host == "" {
		return bad("no host")
	}
	if sp.kind == dnsServer && net.ParseIP(host) == nil && !validDNSName(host) {
		return bad("after dns+ comes a DNS name and a port")
	}
	sp.host, sp.port = host, port
	return sp, nil
}

// validDNSName reports whether s looks like a DNS name: dot-separated
// labels of letters, digits, '-' and '_', none empty (a trailing dot is
// allowed).
func validDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return false
			}
		}
	}
	return true
}

// Option changes how New and NewMemcache build a store.
type Option func(*options)

type options struct {
	log      *slog.Logger
	resolver Resolver
}

// WithLogger sets where the store logs: names that do not resolve,
// servers that join, leave, fail or come back.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithResolver sets how dns+ and dnssrv+ names are resolved (and, when it
// is a *net.Resolver, how host names are resolved when dialling). The
// default is net.DefaultResolver.
func WithResolver(r Resolver) Option { return func(o *options) { o.resolver = r } }

// New builds the configured store.
func New(c Config, opts ...Option) (Store, error) {
	switch c.Type {
	case "memory":
		return NewMemory(nil), nil
	case "memcache":
		return NewMemcache(c.Memcache, opts...)
	}
	return nil, fmt.Errorf("sessionstore: unsupported type %q", c.Type)
}

// errConfig reports problems found while building a store from a
// configuration that was not validated first.
func errConfig(ps confcheck.Problems) error {
	msgs := make([]string, len(ps))
	for i, p := range ps {
		msgs[i] = confcheck.Join("session.store.memcache", p.Key) + ": " + p.Message
	}
	return errors.New(strings.Join(msgs, "; "))
}
