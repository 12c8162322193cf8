package sessionstore

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	p := newTestPKI(t)
	good := func() Config {
		return Config{Type: "memcache", Memcache: MemcacheConfig{
			Servers: []string{"127.0.0.1:11211"}, ResolveInterval: 10 * time.Second, Replicas: 2,
			Timeout: 250 * time.Millisecond, MaxIdleConns: 64,
		}}
	}
	tests := []struct {
		name   string
		change func(c *Config)
		want   []string // "key: message fragment" of each problem, in order; none for valid
	}{
		{"defaults", func(*Config) {}, nil},
		{"memory ignores the memcache section", func(c *Config) { c.Type = "memory"; c.Memcache = MemcacheConfig{} }, nil},
		{"unknown type", func(c *Config) { c.Type = "redis" }, []string{`type: must be memory or memcache, not "redis"`}},
		{"the three forms", func(c *Config) {
			c.Memcache.Servers = []string{"memcached-0:11211", "[::1]:11211", "dns+memcached.default.svc:11211", "dns+10.0.0.1:11211",
				"dnssrv+_memcache._tcp.memcached.default.svc.cluster.local", "dnssrv+_memcache._tcp.memcached."}
		}, nil},
		{"no servers", func(c *Config) { c.Memcache.Servers = nil }, []string{"memcache.servers: at least one server is required"}},
		{"no port", func(c *Config) { c.Memcache.Servers = []string{"memcached"} }, []string{`memcache.servers: "memcached" is not host:port, dns+host:port or dnssrv+_service._proto.name: no port`}},
		{"bad port", func(c *Config) { c.Memcache.Servers = []string{"memcached:99999"} }, []string{"memcache.servers: \"memcached:99999\" is not host:port", "1 to 65535"}},
		{"no host", func(c *Config) { c.Memcache.Servers = []string{":11211"} }, []string{"no host"}},
		{"dns+ without port", func(c *Config) { c.Memcache.Servers = []string{"dns+memcached"} }, []string{`"dns+memcached" is not`, "no port"}},
		{"dns+ with a bad name", func(c *Config) { c.Memcache.Servers = []string{"dns+mem cached:11211"} }, []string{"after dns+ comes a DNS name"}},
		{"dnssrv+ with a port", func(c *Config) { c.Memcache.Servers = []string{"dnssrv+_memcache._tcp.mc:11211"} }, []string{"without a port"}},
		{"dnssrv+ empty", func(c *Config) { c.Memcache.Servers = []string{"dnssrv+"} }, []string{"after dnssrv+ comes an SRV name"}},
		{"unknown prefix", func(c *Config) { c.Memcache.Servers = []string{"dnssrvnoa+_memcache._tcp.mc"} }, []string{"the only prefixes are dns+ and dnssrv+"}},
		{"scheme", func(c *Config) { c.Memcache.Servers = []string{"tcp://memcached:11211"} }, []string{"no scheme"}},
		{"every bad entry is reported", func(c *Config) { c.Memcache.Servers = []string{"a", "b:1", "c"} }, []string{`"a"`, `"c"`}},
		{"resolve_interval zero", func(c *Config) { c.Memcache.ResolveInterval = 0 }, []string{"memcache.resolve_interval: must be a positive duration"}},
		{"replicas zero", func(c *Config) { c.Memcache.Replicas = 0 }, []string{"memcache.replicas: must be at least 1"}},
		{"replicas above the servers is fine (capped)", func(c *Config) { c.Memcache.Replicas = 5 }, nil},
		{"timeout", func(c *Config) { c.Memcache.Timeout = 0 }, []string{"memcache.timeout: must be a positive duration"}},
		{"max_idle_conns", func(c *Config) { c.Memcache.MaxIdleConns = 0 }, []string{"memcache.max_idle_conns: must be at least 1"}},
		{"tls with every file", func(c *Config) {
			c.Memcache.TLS = TLSConfig{Enabled: true, CAFile: p.ca, CertFile: p.clientCert, KeyFile: p.clientKey, ServerName: "memcached"}
		}, nil},
		{"tls with system roots", func(c *Config) { c.Memcache.TLS = TLSConfig{Enabled: true} }, nil},
		{"tls files are not checked while tls is off", func(c *Config) { c.Memcache.TLS = TLSConfig{CAFile: p.missing} }, nil},
		{"ca_file missing", func(c *Config) { c.Memcache.TLS = TLSConfig{Enabled: true, CAFile: p.missing} },
			[]string{"memcache.tls.ca_file: cannot read CA bundle: open " + p.missing}},
		{"ca_file not PEM", func(c *Config) { c.Memcache.TLS = TLSConfig{Enabled: true, CAFile: p.notPEM} },
			[]string{"memcache.tls.ca_file: " + p.notPEM + " holds no PEM certificate"}},
		{"cert_file without key_file", func(c *Config) { c.Memcache.TLS = TLSConfig{Enabled: true, CertFile: p.clientCert} },
			[]string{"memcache.tls.key_file: required when cert_file is set"}},
		{"key_file without cert_file", func(c *Config) { c.Memcache.TLS = TLSConfig{Enabled: true, KeyFile: p.clientKey} },
			[]string{"memcache.tls.cert_file: required when key_file is set"}},
		{"cert_file unreadable", func(c *Config) { c.Memcache.TLS = TLSConfig{Enabled: true, CertFile: p.missing, KeyFile: p.clientKey} },
			[]string{"memcache.tls.cert_file: cannot load the client certificate and key"}},
		{"key does not match", func(c *Config) {
			c.Memcache.TLS = TLSConfig{Enabled: true, CertFile: p.clientCert, KeyFile: p.serverKey}
		},
			[]string{"memcache.tls.cert_file: cannot load the client certificate and key", "does not match"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.change(&c)
			ps := c.Validate()
			var got []string
			for _, p := range ps {
				got = append(got, p.Key+": "+p.Message)
			}
			all := strings.Join(got, "\n")
			if len(tt.want) == 0 {
				if len(ps) > 0 {
					t.Fatalf("problems for a valid configuration:\n%s", all)
				}
				return
			}
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("no problem saying %q in:\n%s", w, all)
				}
			}
		})
	}
}

func TestConfigWarnings(t *testing.T) {
	tests := []struct {
		name string
		c    Config
		want string // fragment of the one warning; "" for none
	}{
		{"plain", Config{Type: "memcache"}, ""},
		{"tls verified", Config{Type: "memcache", Memcache: MemcacheConfig{TLS: TLSConfig{Enabled: true, CAFile: "ca.pem"}}}, ""},
		{"insecure_skip_verify", Config{Type: "memcache", Memcache: MemcacheConfig{TLS: TLSConfig{Enabled: true, InsecureSkipVerify: true}}},
			"session.store.memcache.tls.insecure_skip_verify is true: memcached's certificate is not checked"},
		{"tls settings while off", Config{Type: "memcache", Memcache: MemcacheConfig{TLS: TLSConfig{CAFile: "ca.pem"}}},
			"session.store.memcache.tls.enabled is false"},
		{"memory store", Config{Type: "memory", Memcache: MemcacheConfig{TLS: TLSConfig{Enabled: true, InsecureSkipVerify: true}}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := tt.c.Warnings()
			if tt.want == "" {
				if len(ws) > 0 {
					t.Fatalf("warnings: %q", ws)
				}
				return
			}
			if len(ws) != 1 || !strings.Contains(ws[0], tt.want) {
				t.Fatalf("warnings: %q, want one saying %q", ws, tt.want)
			}
		})
	}
}

// A configuration that was not validated is still refused by the
// constructor, not half used.
func TestNewMemcacheRefusesWhatValidateRefuses(t *testing.T) {
	p := newTestPKI(t)
	for _, cfg := range []MemcacheConfig{
		{Servers: []string{"memcached"}},
		{Servers: []string{"127.0.0.1:11211"}, TLS: TLSConfig{Enabled: true, CAFile: p.missing}},
	} {
		if s, err := NewMemcache(cfg); err == nil {
			_ = s.Close()
			t.Fatalf("NewMemcache(%+v) worked", cfg)
		} else if !strings.Contains(err.Error(), "session.store.memcache.") {
			t.Fatalf("error %q does not name the key", err)
		}
	}
}
