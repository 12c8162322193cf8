package authn

import (
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/internal/confcheck"
)

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

// The tenants Entra accepts in place of a tenant id.
const (
	tenantCommon        = "common"        // work, school and personal accounts
	tenantOrganizations = "organizations" // work and school accounts of any tenant
	tenantConsumers     = "consumers"     // personal Microsoft accounts only
	// consumersTenantID is the tid of every personal Microsoft account.
	consumersTenantID = "9188040d-6c67-4c5b-b112-36a304b66dad"
)

var (
	tenantGUID   = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	tenantDomain = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)
)

// multiTenant reports whether tenant names no single directory, so that
// allowed_tenants must say which ones may sign in.
func multiTenant(tenant string) bool { return tenant == tenantCommon || tenant == tenantOrganizations }

// validate checks auth.microsoft when enabled; keys are relative to it.
// Tenant ids are lower-cased here: Entra writes them lower-case in tid.
func (m *MicrosoftConfig) validate() confcheck.Problems {
	var ps confcheck.Problems
	m.ClientSecret = confcheck.Secret(&ps, "client_secret", m.ClientSecret, m.ClientSecretFile)
	m.ClientSecretFile = ""
	if m.ClientID == "" {
		ps.Addf("client_id", "required when auth.microsoft.enabled is true")
	}
	switch {
	case m.ClientSecret != "" && m.ClientAssertionFile != "":
		ps.Addf("client_assertion_file", "set either client_secret or client_assertion_file, not both")
	case m.ClientSecret == "" && m.ClientAssertionFile == "":
		ps.Addf("client_secret", "required when auth.microsoft.enabled is true (or client_assertion_file, for workload identity federation)")
	case m.ClientAssertionFile != "":
		// The file is re-read at every token request (the kubelet rotates
		// it), but one that is not there at start is a mistake worth
		// reporting now.
		if _, err := os.Stat(m.ClientAssertionFile); err != nil {
			ps.Addf("client_assertion_file", "cannot read the client assertion file: %v", err)
		}
	}
	checkURL(&ps, "url", m.URL)
	checkURL(&ps, "graph_url", m.GraphURL)
	checkAuthParams(&ps, m.Prompt, m.ExtraAuthParams)
	m.checkTenants(&ps)
	// Without openid there is no ID token to verify; without profile no
	// oid, the user's id; without offline_access no refresh token, so
	// membership could never be re-checked and every session would end
	// at its first revalidation.
	for _, s := range []string{"openid", "profile", "offline_access"} {
		if !slices.Contains(m.Scopes, s) {
			ps.Addf("scopes", "must include %q", s)
		}
	}
	// Past about 200 groups the ID token lists none, and they are read
	// from Microsoft Graph with the user's token, which needs a Graph
	// permission (User.Read suffices for the user's own memberships).
	if len(m.AllowedGroups) > 0 && !slices.ContainsFunc(m.Scopes, graphScope) {
		ps.Addf("scopes", "must include User.Read (or GroupMember.Read.All) when allowed_groups is set: "+
			"the groups of users in more than 200 are read from Microsoft Graph")
	}
	byName := map[string]string{}
	for _, id := range slices.Sorted(maps.Keys(m.GroupNames)) {
		name := strings.TrimSpace(m.GroupNames[id])
		switch {
		case strings.TrimSpace(id) == "" || name == "":
			ps.Addf("group_names", "entries map a group object id to a non-empty name")
		case tenantGUID.MatchString(identity.LowerASCII(name)):
			ps.Addf("group_names."+id, "the name %q looks like an object id and would pass for that group", name)
		case byName[name] != "":
			// Two groups under one name: a member of either would pass
			// for the other.
			ps.Addf("group_names."+id, "the name %q is also given to %s; each name must stand for one group", name, byName[name])
		default:
			byName[name] = id
		}
	}
	return ps
}

func (m *MicrosoftConfig) checkTenants(ps *confcheck.Problems) {
	m.Tenant = identity.LowerASCII(strings.TrimSpace(m.Tenant))
	for i, t := range m.AllowedTenants {
		m.AllowedTenants[i] = identity.LowerASCII(strings.TrimSpace(t))
	}
	switch t := m.Tenant; {
	case t == "":
		ps.Addf("tenant", "required: the directory (tenant) id, or organizations together with allowed_tenants")
	case t == tenantConsumers || t == consumersTenantID:
		ps.Addf("tenant", "personal Microsoft accounts have no directory: no tenant to trust, no groups; use a tenant id, or organizations with allowed_tenants")
	case multiTenant(t):
		if len(m.AllowedTenants) == 0 {
			ps.Addf("allowed_tenants", "required when tenant is %q: without it every Microsoft Entra organization's users could sign in; list the tenant ids (GUIDs) that may", t)
		}
	case !tenantGUID.MatchString(t) && !tenantDomain.MatchString(t):
		ps.Addf("tenant", "%q is neither a tenant id (GUID), a verified domain of the tenant, organizations nor common", t)
	case tenantGUID.MatchString(t) && len(m.AllowedTenants) > 0 && !slices.Contains(m.AllowedTenants, t):
		ps.Addf("allowed_tenants", "does not list the tenant %q itself, so nobody could sign in", t)
	}
	for _, a := range m.AllowedTenants {
		switch {
		case a == consumersTenantID:
			ps.Addf("allowed_tenants", "%q is the tenant of personal Microsoft accounts, which anyone can create; it cannot be allowed", a)
		case !tenantGUID.MatchString(a):
			ps.Addf("allowed_tenants", "%q is not a tenant id (a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47); a token's tid is always one", a)
		}
	}
}

// graphScope reports whether scope lets the user's token read their
// memberships from Microsoft Graph.
func graphScope(scope string) bool {
	scope = strings.TrimPrefix(identity.LowerASCII(scope), "https://graph.microsoft.com/")
	switch scope {
	case "user.read", "user.read.all", "groupmember.read.all", "group.read.all", "directory.read.all":
		return true
	}
	return false
}
