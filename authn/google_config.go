package authn

import "github.com/gatehouse/gatehouse/internal/confcheck"

// GoogleConfig is auth.google: Google Workspace sign-in (OpenID Connect
// with the hosted-domain check) and, optionally, its groups read with a
// service account.
type GoogleConfig struct {
	Enabled              bool              `mapstructure:"enabled"`
	URL                  string            `mapstructure:"url"`
	ClientID             string            `mapstructure:"client_id"`
	ClientSecret         string            `mapstructure:"client_secret" secret:"true"`
	ClientSecretFile     string            `mapstructure:"client_secret_file"`
	AllowedHostedDomains []string          `mapstructure:"allowed_hosted_domains"`
	ServiceAccountFile   string            `mapstructure:"service_account_file"`
	AdminEmail           string            `mapstructure:"admin_email"`
	GroupsSource         string            `mapstructure:"groups_source"`
	AdminSDKURL          string            `mapstructure:"admin_sdk_url"`
	CloudIdentityURL     string            `mapstructure:"cloud_identity_url"`
	AllowedGroups        []string          `mapstructure:"allowed_groups"`
	Prompt               string            `mapstructure:"prompt"`
	ExtraAuthParams      map[string]string `mapstructure:"extra_auth_params"`
}

// DefaultGoogle is auth.google's defaults.
func DefaultGoogle() GoogleConfig {
	return GoogleConfig{
		URL: "https://accounts.google.com", GroupsSource: "admin_sdk",
		AdminSDKURL: "https://admin.googleapis.com", CloudIdentityURL: "https://cloudidentity.googleapis.com",
	}
}

// validate checks auth.google when enabled; keys are relative to it.
func (g *GoogleConfig) validate() confcheck.Problems {
	var ps confcheck.Problems
	g.ClientSecret = confcheck.Secret(&ps, "client_secret", g.ClientSecret, g.ClientSecretFile)
	g.ClientSecretFile = ""
	requireWhenEnabled(&ps, "google", g.ClientID, g.ClientSecret)
	checkURL(&ps, "url", g.URL)
	checkAuthParams(&ps, g.Prompt, g.ExtraAuthParams)
	return ps
}
