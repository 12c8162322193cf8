package authn

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"

	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/internal/confcheck"
)

// Config is the auth section: global filters and the providers.
type Config struct {
	filters.Config `mapstructure:",squash"`
	GitHub         GitHubConfig          `mapstructure:"github"`
	GitLab         GitLabConfig          `mapstructure:"gitlab"`
	OIDC           map[string]OIDCConfig `mapstructure:"oidc"`
	Google         GoogleConfig          `mapstructure:"google"`
	Microsoft      MicrosoftConfig       `mapstructure:"microsoft"`
	// CAFile is an extra PEM bundle of certificate authorities trusted
	// for every provider (private PKI).
	CAFile string `mapstructure:"ca_file"`
	// LinkAccountsByVerifiedEmail makes sign-ins with the same verified
	// e-mail address through any provider one user.
	LinkAccountsByVerifiedEmail bool `mapstructure:"link_accounts_by_verified_email"`
}

// OIDCConfig is one generic OpenID Connect provider under auth.oidc.NAME.
type OIDCConfig struct {
	DisplayName               string   `mapstructure:"display_name"`
	IssuerURL                 string   `mapstructure:"issuer_url"`
	ClientID                  string   `mapstructure:"client_id"`
	ClientSecret              string   `mapstructure:"client_secret" secret:"true"`
	ClientSecretFile          string   `mapstructure:"client_secret_file"`
	Scopes                    []string `mapstructure:"scopes"`
	GroupsClaim               string   `mapstructure:"groups_claim"`
	AllowedGroups             []string `mapstructure:"allowed_groups"`
	UserClaim                 string   `mapstructure:"user_claim"`
	InsecureSkipEmailVerified bool     `mapstructure:"insecure_skip_email_verified"`
	// Prompt is sent as the prompt parameter (select_account, login, ...).
	Prompt string `mapstructure:"prompt"`
	// ExtraAuthParams are added to the authorization request (login_hint,
	// domain_hint, acr_values, ...); they can never replace a parameter
	// of the protocol itself.
	ExtraAuthParams map[string]string `mapstructure:"extra_auth_params"`
	// BackchannelLogout accepts OpenID Connect Back-Channel Logout at
	// <prefix>/backchannel_logout/NAME.
	BackchannelLogout bool `mapstructure:"backchannel_logout"`
	// EndSession makes sign_out continue to the provider's
	// end_session_endpoint (RP-Initiated Logout).
	EndSession bool `mapstructure:"end_session"`
}

// GitHubConfig is auth.github.
type GitHubConfig struct {
	Enabled              bool     `mapstructure:"enabled"`
	ClientID             string   `mapstructure:"client_id"`
	ClientSecret         string   `mapstructure:"client_secret" secret:"true"`
	ClientSecretFile     string   `mapstructure:"client_secret_file"`
	URL                  string   `mapstructure:"url"`
	APIURL               string   `mapstructure:"api_url"`
	Scopes               []string `mapstructure:"scopes"`
	AllowedOrganizations []string `mapstructure:"allowed_organizations"`
	AllowedTeams         []string `mapstructure:"allowed_teams"`
	AllowedUsers         []string `mapstructure:"allowed_users"`
}

// GitLabConfig is auth.gitlab.
type GitLabConfig struct {
	Enabled          bool     `mapstructure:"enabled"`
	URL              string   `mapstructure:"url"`
	ClientID         string   `mapstructure:"client_id"`
	ClientSecret     string   `mapstructure:"client_secret" secret:"true"`
	ClientSecretFile string   `mapstructure:"client_secret_file"`
	Scopes           []string `mapstructure:"scopes"`
	AllowedGroups    []string `mapstructure:"allowed_groups"`
}

// OIDCFields are the keys of an auth.oidc.NAME entry, for mapping
// environment variables such as GATEHOUSE_AUTH_OIDC_CORP_ISSUER_URL.
var OIDCFields = []string{
	"display_name", "issuer_url", "client_id", "client_secret", "client_secret_file",
	"scopes", "groups_claim", "allowed_groups", "user_claim", "insecure_skip_email_verified",
	"prompt", "extra_auth_params", "backchannel_logout", "end_session",
}

const (
	defaultGitHubURL = "https://github.com"
	defaultGitHubAPI = "https://api.github.com"
)

func requireWhenEnabled(ps *confcheck.Problems, section, id, secret string) {
	if id == "" {
		ps.Addf("client_id", "required when auth.%s.enabled is true", section)
	}
	if secret == "" {
		ps.Addf("client_secret", "required when auth.%s.enabled is true", section)
	}
}

var providerName = regexp.MustCompile(`^[a-z][a-z0-9]*$`)

// Validate checks the section, resolves *_file secrets, fills per-provider
// defaults and returns the global filter lists. Warnings are things worth
// a log line that do not stop start-up.
func (c *Config) Validate() (global filters.Lists, warnings []string, ps confcheck.Problems) {
	global, fps := c.Config.Validate()
	ps = append(ps, fps...)
	globalEmpty := filters.NewRule(global).Empty()

	needFilter := func(key string, own filters.Lists) {
		if globalEmpty && filters.NewRule(own).Empty() && !c.AllowAllUsers {
			ps.Addf(key, "no filter applies to this provider, so anyone with an account there could sign in; "+
				"set auth.allowed_domains, auth.allowed_emails or the provider's allowed_* lists, or auth.allow_all_users: true")
		}
	}

	if c.GitHub.Enabled {
		var sub confcheck.Problems
		g := &c.GitHub
		g.ClientSecret = confcheck.Secret(&sub, "client_secret", g.ClientSecret, g.ClientSecretFile)
		g.ClientSecretFile = ""
		requireWhenEnabled(&sub, "github", g.ClientID, g.ClientSecret)
		checkURL(&sub, "url", g.URL)
		// GitHub Enterprise Server: with only url changed, the API lives
		// under it at /api/v3.
		if g.APIURL == defaultGitHubAPI && strings.TrimSuffix(g.URL, "/") != defaultGitHubURL {
			g.APIURL = strings.TrimSuffix(g.URL, "/") + "/api/v3"
		}
		checkURL(&sub, "api_url", g.APIURL)
		filters.CheckTeams(&sub, "allowed_teams", g.AllowedTeams)
		ps.Nest("github", sub)
		needFilter("github", filters.Lists{Organizations: g.AllowedOrganizations, Teams: g.AllowedTeams, Users: g.AllowedUsers})
	} else if c.GitHub.ClientID != "" || c.GitHub.ClientSecret != "" || c.GitHub.ClientSecretFile != "" {
		warnings = append(warnings, "auth.github has credentials but auth.github.enabled is false; GitHub sign-in is off")
	}
	if c.GitLab.Enabled {
		var sub confcheck.Problems
		g := &c.GitLab
		g.ClientSecret = confcheck.Secret(&sub, "client_secret", g.ClientSecret, g.ClientSecretFile)
		g.ClientSecretFile = ""
		requireWhenEnabled(&sub, "gitlab", g.ClientID, g.ClientSecret)
		checkURL(&sub, "url", g.URL)
		ps.Nest("gitlab", sub)
		needFilter("gitlab", filters.Lists{Groups: g.AllowedGroups})
	} else if c.GitLab.ClientID != "" || c.GitLab.ClientSecret != "" || c.GitLab.ClientSecretFile != "" {
		warnings = append(warnings, "auth.gitlab has credentials but auth.gitlab.enabled is false; GitLab sign-in is off")
	}

	for _, name := range c.OIDCNames() {
		p := c.OIDC[name]
		key := "oidc." + name
		if !providerName.MatchString(name) {
			ps.Addf(key, "provider names must be lower-case letters and digits, starting with a letter")
		}
		if name == "github" || name == "gitlab" || name == "google" || name == "microsoft" {
			ps.Addf(key, "%q is reserved; use auth.%s", name, name)
		}
		if name == "static" {
			ps.Addf(key, "%q is reserved for static machine tokens", name)
		}
		if name == "email" || name == "jwt" {
			// "email:<address>" is a linked account's id, "jwt:NAME" a
			// workload issuer's: a provider so named could pass for either.
			ps.Addf(key, "%q is reserved", name)
		}
		var sub confcheck.Problems
		p.ClientSecret = confcheck.Secret(&sub, "client_secret", p.ClientSecret, p.ClientSecretFile)
		p.ClientSecretFile = ""
		checkURL(&sub, "issuer_url", p.IssuerURL)
		if p.ClientID == "" {
			sub.Addf("client_id", "required")
		}
		p.setDefaults(name)
		checkAuthParams(&sub, p.Prompt, p.ExtraAuthParams)
		if p.InsecureSkipEmailVerified {
			warnings = append(warnings, insecureSkipEmailVerifiedWarning(name))
			if c.LinkAccountsByVerifiedEmail {
				// Whoever sets an address there would become the account of
				// that address at every provider.
				sub.Addf("insecure_skip_email_verified", "cannot be true with auth.link_accounts_by_verified_email: "+
					"an address this provider does not verify would link to the account of whoever owns it")
			}
		}
		ps.Nest(key, sub)
		needFilter(key, filters.Lists{Groups: p.AllowedGroups})
		c.OIDC[name] = p
	}
	if c.Google.Enabled {
		ps.Nest("google", c.Google.validate())
		if !strings.Contains(c.Google.Prompt, "consent") {
			// Google hands out a refresh token only when the person consents;
			// without one, revalidation has an access token of about an hour.
			warnings = append(warnings, "auth.google.prompt does not include consent: Google issues a refresh token only at "+
				"first consent, so later sign-ins get sessions that end at their first revalidation (about an hour); "+
				"set auth.google.prompt: consent")
		}
		needFilter("google", filters.Lists{Groups: c.Google.AllowedGroups, Domains: c.Google.AllowedHostedDomains})
	}
	if c.Microsoft.Enabled {
		// No needFilter: the tenant (or allowed_tenants, which validate
		// requires with organizations/common) is the provider's filter.
		ps.Nest("microsoft", c.Microsoft.validate())
	}
	if len(c.OIDC) == 0 && !c.GitHub.Enabled && !c.GitLab.Enabled && !c.Google.Enabled && !c.Microsoft.Enabled {
		ps.Addf("oidc", "no sign-in provider is configured; declare one under auth.oidc (or enable auth.github, auth.gitlab, auth.google or auth.microsoft)")
	}
	return global, warnings, ps
}

// insecureSkipEmailVerifiedWarning is the start-up warning for an OIDC
// provider configured with insecure_skip_email_verified: true.
func insecureSkipEmailVerifiedWarning(name string) string {
	return fmt.Sprintf("auth.oidc.%s.insecure_skip_email_verified is true: an ID token from provider %q without email_verified "+
		"counts as verified, so anybody who can set their own e-mail address there passes allowed_domains and allowed_emails", name, name)
}

// OIDCNames returns the configured OIDC provider names, sorted so that
// buttons and problems come in a stable order.
func (c *Config) OIDCNames() []string {
	names := make([]string, 0, len(c.OIDC))
	for n := range c.OIDC {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (p *OIDCConfig) setDefaults(name string) {
	if p.DisplayName == "" {
		p.DisplayName = name
	}
	if len(p.Scopes) == 0 {
		p.Scopes = []string{"openid", "profile", "email"}
	}
	if p.GroupsClaim == "" {
		p.GroupsClaim = "groups"
	}
	if p.UserClaim == "" {
		p.UserClaim = "preferred_username"
	}
}

func checkURL(ps *confcheck.Problems, key, raw string) {
	if raw == "" {
		ps.Addf(key, "required")
		return
	}
	if err := validURL(raw); err != nil {
		ps.Addf(key, "%v", err)
	}
}

func validURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("%q must not have a query or fragment", raw)
	}
	return nil
}
