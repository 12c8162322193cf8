package authn

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/internal/confcheck"
)

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
		URL: "https://accounts.google.com", GroupsSource: googleAdminSDK,
		AdminSDKURL: "https://admin.googleapis.com", CloudIdentityURL: "https://cloudidentity.googleapis.com",
	}
}

// The groups sources and the one read-only scope each needs; the scope is
// what an administrator authorizes for the service account's client id
// under domain-wide delegation.
const (
	googleAdminSDK      = "admin_sdk"
	googleCloudIdentity = "cloud_identity"

	googleScopeAdminSDK      = "https://www.googleapis.com/auth/admin.directory.group.readonly"
	googleScopeCloudIdentity = "https://www.googleapis.com/auth/cloud-identity.groups.readonly"
)

// hostedDomainPattern is a bare DNS name, lower-case: what Google puts in
// the hd claim.
var hostedDomainPattern = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// validate checks auth.google when enabled; keys are relative to it. It
// lower-cases allowed_hosted_domains and allowed_groups, since Google
// compares both without case and the provider matches them exactly.
func (g *GoogleConfig) validate() confcheck.Problems {
	var ps confcheck.Problems
	g.ClientSecret = confcheck.Secret(&ps, "client_secret", g.ClientSecret, g.ClientSecretFile)
	g.ClientSecretFile = ""
	requireWhenEnabled(&ps, "google", g.ClientID, g.ClientSecret)
	checkURL(&ps, "url", g.URL)
	checkAuthParams(&ps, g.Prompt, g.ExtraAuthParams)
	for i, d := range g.AllowedHostedDomains {
		g.AllowedHostedDomains[i] = identity.LowerASCII(strings.TrimSpace(d))
		if !hostedDomainPattern.MatchString(g.AllowedHostedDomains[i]) {
			ps.Addf(fmt.Sprintf("allowed_hosted_domains[%d]", i), "%q is not a bare domain name such as example.com (no @, scheme or path)", d)
		}
	}
	for i, e := range g.AllowedGroups {
		g.AllowedGroups[i] = identity.LowerASCII(strings.TrimSpace(e))
		if _, _, ok := identity.SplitEmail(g.AllowedGroups[i]); !ok {
			ps.Addf(fmt.Sprintf("allowed_groups[%d]", i), "%q is not a group e-mail address", e)
		}
	}
	switch g.GroupsSource {
	case googleAdminSDK:
		checkURL(&ps, "admin_sdk_url", g.AdminSDKURL)
	case googleCloudIdentity:
		checkURL(&ps, "cloud_identity_url", g.CloudIdentityURL)
	default:
		ps.Addf("groups_source", "%q is not a groups source; use admin_sdk or cloud_identity", g.GroupsSource)
	}
	if g.ServiceAccountFile == "" {
		if len(g.AllowedGroups) > 0 {
			ps.Addf("allowed_groups", "Google groups without a service account: Google's ID token carries no groups, "+
				"so set service_account_file (a key with domain-wide delegation) and admin_email")
		}
		return ps
	}
	if len(g.AllowedHostedDomains) == 0 {
		// Groups are looked up by address; without the hd check a consumer
		// Google account opened under a work address would be taken for the
		// Workspace user of that address.
		ps.Addf("allowed_hosted_domains", "required with service_account_file: groups are read by e-mail address, "+
			"which only a Workspace account of your own domain (its hd claim) proves to be that directory user")
	}
	if g.AdminEmail == "" {
		ps.Addf("admin_email", "required with service_account_file: the Workspace administrator the service account acts as")
	} else if _, _, ok := identity.SplitEmail(g.AdminEmail); !ok {
		ps.Addf("admin_email", "%q is not an e-mail address", g.AdminEmail)
	}
	if _, err := loadGoogleServiceAccount(g.ServiceAccountFile); err != nil {
		ps.Addf("service_account_file", "%v", err)
	}
	return ps
}

// googleServiceAccount is a service account's JSON key file, as the Cloud
// console hands it out.
type googleServiceAccount struct {
	Type         string `json:"type"`
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	ClientID     string `json:"client_id"`
	TokenURI     string `json:"token_uri"`
}

// loadGoogleServiceAccount reads and checks a JSON key file, so a broken
// key shows at check and start-up rather than at the first sign-in.
func loadGoogleServiceAccount(path string) (*googleServiceAccount, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the service account key: %v", err)
	}
	var sa googleServiceAccount
	if err := json.Unmarshal(b, &sa); err != nil {
		return nil, fmt.Errorf("%s is not a JSON service account key: %v", path, err)
	}
	if sa.Type != "service_account" {
		return nil, fmt.Errorf("%s has type %q; want a service account key (type service_account)", path, sa.Type)
	}
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"private_key_id", sa.PrivateKeyID}, {"private_key", sa.PrivateKey}, {"client_email", sa.ClientEmail}, {"token_uri", sa.TokenURI},
	} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s lacks %s", path, strings.Join(missing, ", "))
	}
	if err := validURL(sa.TokenURI); err != nil {
		return nil, fmt.Errorf("%s: token_uri: %v", path, err)
	}
	if err := checkRSAKey(sa.PrivateKey); err != nil {
		return nil, fmt.Errorf("%s: private_key: %v", path, err)
	}
	return &sa, nil
}

// checkRSAKey makes sure the PEM holds an RSA private key, the only kind
// the JWT-bearer assertion (RS256) can be signed with.
func checkRSAKey(p string) error {
	block, _ := pem.Decode([]byte(p))
	if block == nil {
		return errors.New("not a PEM-encoded key")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		if _, err1 := x509.ParsePKCS1PrivateKey(block.Bytes); err1 == nil {
			return nil
		}
		return fmt.Errorf("cannot parse the key: %v", err)
	}
	if _, ok := key.(*rsa.PrivateKey); !ok {
		return errors.New("not an RSA key")
	}
	return nil
}
