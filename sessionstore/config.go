package sessionstore

import (
	"fmt"
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
		ps.Addf("type", "memcache is not available in this version yet; use memory (one replica)")
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
	}
	return nil, fmt.Errorf("sessionstore: unsupported type %q", c.Type)
}
