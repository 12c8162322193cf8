package sessionstore

import (
	"fmt"
	"net"
	"strconv"
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
	Servers      []string      `mapstructure:"servers"`
	Timeout      time.Duration `mapstructure:"timeout"`
	MaxIdleConns int           `mapstructure:"max_idle_conns"`
}

// Validate checks the section.
func (c Config) Validate() confcheck.Problems {
	var ps confcheck.Problems
	switch c.Type {
	case "memory":
	case "memcache":
		if len(c.Memcache.Servers) == 0 {
			ps.Addf("memcache.servers", "at least one host:port is required when type is memcache")
		}
		for _, s := range c.Memcache.Servers {
			host, port, err := net.SplitHostPort(s)
			if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
				ps.Addf("memcache.servers", "%q is not host:port", s)
			}
		}
		if c.Memcache.Timeout <= 0 {
			ps.Addf("memcache.timeout", "must be a positive duration such as 250ms")
		}
		if c.Memcache.MaxIdleConns <= 0 {
			ps.Addf("memcache.max_idle_conns", "must be at least 1")
		}
	default:
		ps.Addf("type", "must be memory or memcache, not %q", c.Type)
	}
	return ps
}

// New builds the configured store.
func New(c Config) (Store, error) {
	switch c.Type {
	case "memory":
		return NewMemory(nil), nil
	case "memcache":
		return NewMemcache(c.Memcache)
	}
	return nil, fmt.Errorf("sessionstore: unsupported type %q", c.Type)
}
