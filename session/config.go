package session

import (
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/confcheck"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// MinSecretLen is the shortest session.secret accepted, in bytes.
const MinSecretLen = 32

// Config is the session section.
type Config struct {
	Secret             string              `mapstructure:"secret" secret:"true"`
	SecretFile         string              `mapstructure:"secret_file"`
	CookieName         string              `mapstructure:"cookie_name"`
	CookieDomain       string              `mapstructure:"cookie_domain"`
	CookieSecure       bool                `mapstructure:"cookie_secure"`
	CookieSameSite     string              `mapstructure:"cookie_samesite"`
	Lifetime           time.Duration       `mapstructure:"lifetime"`
	IdleTimeout        time.Duration       `mapstructure:"idle_timeout"`
	RevalidateInterval time.Duration       `mapstructure:"revalidate_interval"`
	Store              sessionstore.Config `mapstructure:"store"`
}

// Validate checks the section and resolves secret_file into Secret.
func (c *Config) Validate() confcheck.Problems {
	var ps confcheck.Problems
	c.Secret = confcheck.Secret(&ps, "secret", c.Secret, c.SecretFile)
	c.SecretFile = ""
	switch {
	case c.Secret == "":
		ps.Addf("secret", "required; generate one with `gatehouse gen-secret`")
	case len(c.Secret) < MinSecretLen:
		ps.Addf("secret", "must be at least %d bytes, got %d; generate one with `gatehouse gen-secret`", MinSecretLen, len(c.Secret))
	}
	if c.CookieName == "" || strings.ContainsAny(c.CookieName, "()<>@,;:\\\"/[]?={} \t") {
		ps.Addf("cookie_name", "%q is not a valid cookie name", c.CookieName)
	}
	// Browsers drop cookies whose prefix promises what the attributes do
	// not keep; say so at start instead of failing every sign-in.
	if strings.HasPrefix(c.CookieName, "__Host-") && (!c.CookieSecure || c.CookieDomain != "") {
		ps.Addf("cookie_name", "a __Host- cookie needs cookie_secure: true and no cookie_domain")
	}
	if strings.HasPrefix(c.CookieName, "__Secure-") && !c.CookieSecure {
		ps.Addf("cookie_name", "a __Secure- cookie needs cookie_secure: true")
	}
	if strings.ContainsAny(c.CookieDomain, " ;,/") {
		ps.Addf("cookie_domain", "%q is not a domain", c.CookieDomain)
	}
	if _, ok := sameSiteModes[strings.ToLower(c.CookieSameSite)]; !ok {
		ps.Addf("cookie_samesite", "must be lax, strict or none, not %q", c.CookieSameSite)
	}
	if strings.EqualFold(c.CookieSameSite, "none") && !c.CookieSecure {
		ps.Addf("cookie_samesite", "none requires cookie_secure: true (browsers reject it otherwise)")
	}
	if c.Lifetime <= 0 {
		ps.Addf("lifetime", "must be a positive duration such as 168h")
	}
	if c.IdleTimeout <= 0 {
		ps.Addf("idle_timeout", "must be a positive duration such as 24h")
	}
	if c.RevalidateInterval <= 0 {
		ps.Addf("revalidate_interval", "must be a positive duration such as 1h")
	}
	ps.Nest("store", c.Store.Validate())
	return ps
}

var sameSiteModes = map[string]http.SameSite{
	"lax":    http.SameSiteLaxMode,
	"strict": http.SameSiteStrictMode,
	"none":   http.SameSiteNoneMode,
}

func (c Config) sameSite() http.SameSite { return sameSiteModes[strings.ToLower(c.CookieSameSite)] }
