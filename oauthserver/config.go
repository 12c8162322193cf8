package oauthserver

import (
	"time"

	"github.com/gatehouse/gatehouse/internal/confcheck"
)

// DeviceFlowConfig is the device_flow section (RFC 8628).
type DeviceFlowConfig struct {
	Enabled       bool          `mapstructure:"enabled"`
	CodeLifetime  time.Duration `mapstructure:"code_lifetime"`
	PollInterval  time.Duration `mapstructure:"poll_interval"`
	TokenLifetime time.Duration `mapstructure:"token_lifetime"`
}

// Validate checks the device_flow section.
func (c DeviceFlowConfig) Validate() confcheck.Problems {
	var ps confcheck.Problems
	if !c.Enabled {
		return ps
	}
	if c.CodeLifetime < time.Minute || c.CodeLifetime > time.Hour {
		ps.Addf("code_lifetime", "must be between 1m and 1h, got %s", c.CodeLifetime)
	}
	if c.PollInterval < time.Second || c.PollInterval > time.Minute {
		ps.Addf("poll_interval", "must be between 1s and 1m, got %s", c.PollInterval)
	}
	if c.TokenLifetime < time.Minute {
		ps.Addf("token_lifetime", "must be at least 1m, got %s", c.TokenLifetime)
	}
	return ps
}
