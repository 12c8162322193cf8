package authn

import "github.com/gatehouse/gatehouse/internal/confcheck"

// MicrosoftConfig is auth.microsoft: Microsoft Entra ID sign-in, with the
// tenant checks, verified-e-mail rule and group overage handling that
// generic OpenID Connect does not know.
type MicrosoftConfig struct {
	Enabled             bool              `mapstructure:"enabled"`
	URL                 string            `mapstructure:"url"`
	GraphURL            string            `mapstructure:"graph_url"`
	Tenant              string            `mapstructure:"tenant"`
	AllowedTenants      []string          `mapstructure:"allowed_tenants"`
	Scopes              []string          `mapstructure:"scopes"`
	Prompt              string            `mapstructure:"prompt"`
	ExtraAuthParams     map[string]string `mapstructure:"extra_auth_params"`
	ClientID            string            `mapstructure:"client_id"`
	ClientSecret        string            `mapstructure:"client_secret" secret:"true"`
	ClientSecretFile    string            `mapstructure:"client_secret_file"`
	ClientAssertionFile string            `mapstructure:"client_assertion_file"`
	AllowedGroups       []string          `mapstructure:"allowed_groups"`
	GroupNames          map[string]string `mapstructure:"group_names"`
	RolesAsGroups       bool              `mapstructure:"roles_as_groups"`
}

// DefaultMicrosoft is auth.microsoft's defaults.
func DefaultMicrosoft() MicrosoftConfig {
	return MicrosoftConfig{
		URL: "https://login.microsoftonline.com", GraphURL: "https://graph.microsoft.com",
		Scopes: []string{"openid", "profile", "email", "offline_access", "User.Read"},
	}
}

// validate checks auth.microsoft when enabled; keys are relative to it.
func (m *MicrosoftConfig) validate() confcheck.Problems {
	var ps confcheck.Problems
	m.ClientSecret = confcheck.Secret(&ps, "client_secret", m.ClientSecret, m.ClientSecretFile)
	m.ClientSecretFile = ""
	if m.ClientID == "" {
		ps.Addf("client_id", "required when auth.microsoft.enabled is true")
	}
	checkURL(&ps, "url", m.URL)
	checkURL(&ps, "graph_url", m.GraphURL)
	checkAuthParams(&ps, m.Prompt, m.ExtraAuthParams)
	return ps
}
