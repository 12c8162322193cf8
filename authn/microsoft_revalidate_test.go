package authn

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/internal/fakeentra"
)

func TestMicrosoftGroupsAndRoles(t *testing.T) {
	tests := []struct {
		name       string
		edit       func(*MicrosoftConfig)
		wantGroups []string
		allowed    bool
	}{
		{"group id", func(c *MicrosoftConfig) { c.AllowedGroups = []string{msGroupOps} }, []string{msGroupOps}, true},
		{"group id in capitals", func(c *MicrosoftConfig) { c.AllowedGroups = []string{strings.ToUpper(msGroupOps)} }, []string{msGroupOps}, true},
		{"mapped name", func(c *MicrosoftConfig) {
			c.GroupNames, c.AllowedGroups = map[string]string{strings.ToUpper(msGroupOps): "ops"}, []string{"ops"}
		}, []string{"ops"}, true},
		{"id of a mapped group", func(c *MicrosoftConfig) {
			c.GroupNames, c.AllowedGroups = map[string]string{msGroupOps: "ops"}, []string{msGroupOps}
		}, []string{"ops"}, true},
		{"display name is not a group name", func(c *MicrosoftConfig) { c.AllowedGroups = []string{"Ops"} }, []string{msGroupOps}, false},
		{"role without roles_as_groups", func(c *MicrosoftConfig) { c.AllowedGroups = []string{"Dashboard.Reader"} }, []string{msGroupOps}, false},
		{"role with roles_as_groups", func(c *MicrosoftConfig) {
			c.AllowedGroups, c.RolesAsGroups = []string{"Dashboard.Reader"}, true
		}, []string{msGroupOps, "Dashboard.Reader"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newMSFixture(t, filters.Lists{}, nil, tt.edit)
			if !tt.allowed {
				f.refused(t, "alice@a.example", 403, "not a member of an allowed group")
				return
			}
			if got := f.session(t, "alice@a.example").Identity.Groups; !slices.Equal(got, tt.wantGroups) {
				t.Errorf("groups %q, want %q", got, tt.wantGroups)
			}
		})
	}
}

func TestMicrosoftClientAssertionFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "azure-identity-token")
	write := func(v string) {
		if err := os.WriteFile(file, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("eyJ.projected-token-1.sig")
	f := newMSFixture(t, filters.Lists{}, nil, func(c *MicrosoftConfig) {
		c.ClientSecret, c.ClientAssertionFile, c.AllowedGroups = "", file, []string{msGroupOps}
	})
	f.fake.SetClientAssertion("eyJ.projected-token-1.sig")
	s := f.session(t, "alice@a.example")

	// The kubelet rotates the token; the next request sends the new one.
	write("eyJ.projected-token-2.sig")
	f.fake.SetClientAssertion("eyJ.projected-token-2.sig")
	if _, _, err := f.p.Revalidate(context.Background(), s.Token); err != nil {
		t.Fatal(err)
	}
	want := []string{"eyJ.projected-token-1.sig", "eyJ.projected-token-2.sig"}
	if got := f.fake.Assertions(); !slices.Equal(got, want) {
		t.Errorf("assertions sent %q, want %q", got, want)
	}
	for _, r := range f.fake.TokenRequests() {
		if r.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || r.Has("client_secret") {
			t.Errorf("token request %v: want a jwt-bearer client assertion and no secret", r)
		}
	}
	// An assertion Entra refuses (invalid_client) is Gatehouse's problem,
	// not the user's: the session waits in grace instead of ending.
	f.fake.SetClientAssertion("eyJ.projected-token-3.sig")
	if _, _, err := f.p.Revalidate(context.Background(), s.Token); err == nil || errors.Is(err, ErrRevoked) {
		t.Errorf("refused client assertion at revalidation: %v, want a provider error", err)
	}
}

func TestMicrosoftRevalidate(t *testing.T) {
	f := newMSFixture(t, filters.Lists{}, nil, func(c *MicrosoftConfig) {
		c.Tenant, c.AllowedTenants, c.AllowedGroups = "organizations", []string{msTenantA}, []string{msGroupOps}
	})
	s := f.session(t, "alice@a.example")
	ctx := context.Background()

	// Memberships changed at Entra show at the next revalidation, read
	// from Graph now that there are too many for the token.
	f.fake.SetUser(fakeentra.User{TenantID: msTenantA, OID: msOID(1), UserPrincipalName: "alice@a.example",
		Groups: groupIDs(300), Password: "pw"})
	id, tok, err := f.p.Revalidate(ctx, s.Token)
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != s.Identity.Subject || len(id.Groups) != 300 || slices.Contains(id.Groups, msGroupOps) {
		t.Errorf("revalidated identity %s with %d groups", id.Subject, len(id.Groups))
	}
	if tok.RefreshToken == "" || tok.RefreshToken == s.Token.RefreshToken || tok.AccessToken == s.Token.AccessToken {
		t.Error("refreshed tokens not taken")
	}
	reqs := f.fake.TokenRequests()
	if r := reqs[len(reqs)-1]; r.Get("grant_type") != "refresh_token" || !strings.Contains(r.Get("scope"), "openid") {
		t.Errorf("refresh request %v: want the scopes sent (Entra's v2.0 endpoint asks for them)", r)
	}

	// Graph failing at revalidation: the grace rule decides, not the provider.
	f.fake.FailGraph(0, 1, 503)
	if _, _, err := f.p.Revalidate(ctx, tok); err == nil || errors.Is(err, ErrRevoked) {
		t.Errorf("Graph down at revalidation: %v, want a provider error", err)
	}
	// A refreshed token from a tenant no longer allowed ends the session.
	f.fake.EditIDToken(func(c map[string]any) { c["tid"], c["iss"] = msTenantB, f.srv.URL+"/"+msTenantB+"/v2.0" })
	if _, _, err := f.p.Revalidate(ctx, tok); !errors.Is(err, ErrRevoked) {
		t.Errorf("refreshed token of another tenant: %v, want ErrRevoked", err)
	}
	f.fake.EditIDToken(nil)
	// Revoked at Entra (refresh refused with invalid_grant): the session ends.
	f.fake.RevokeRefreshTokens(msOID(1))
	if _, _, err := f.p.Revalidate(ctx, tok); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked refresh token: %v, want ErrRevoked", err)
	}
	if _, _, err := f.p.Revalidate(ctx, nil); !errors.Is(err, ErrRevoked) {
		t.Errorf("no token: %v, want ErrRevoked", err)
	}
}

func TestMicrosoftConfigValidate(t *testing.T) {
	dir := t.TempDir()
	assertion := filepath.Join(dir, "token")
	if err := os.WriteFile(assertion, []byte("eyJ"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*MicrosoftConfig)
		want []string // "key: part of the message"; none: valid
	}{
		{"single tenant id", nil, nil},
		{"tenant by verified domain", func(c *MicrosoftConfig) { c.Tenant = "contoso.onmicrosoft.com" }, nil},
		{"organizations with allowed_tenants", func(c *MicrosoftConfig) { c.Tenant, c.AllowedTenants = "organizations", []string{msTenantB} }, nil},
		{"single tenant also listed in allowed_tenants", func(c *MicrosoftConfig) { c.AllowedTenants = []string{msTenantA} }, nil},
		{"client assertion file", func(c *MicrosoftConfig) { c.ClientSecret, c.ClientAssertionFile = "", assertion }, nil},
		{"no tenant", func(c *MicrosoftConfig) { c.Tenant = "" }, []string{"tenant: required"}},
		{"common without allowed_tenants", func(c *MicrosoftConfig) { c.Tenant = "common" },
			[]string{`allowed_tenants: required when tenant is "common"`}},
		{"organizations without allowed_tenants", func(c *MicrosoftConfig) { c.Tenant = "Organizations" },
			[]string{`allowed_tenants: required when tenant is "organizations"`}},
		{"consumers", func(c *MicrosoftConfig) { c.Tenant = "consumers" }, []string{"tenant: personal Microsoft accounts"}},
		{"consumers tenant id", func(c *MicrosoftConfig) { c.Tenant = "9188040d-6c67-4c5b-b112-36a304b66dad" }, []string{"tenant: personal Microsoft accounts"}},
		{"consumers in allowed_tenants", func(c *MicrosoftConfig) {
			c.Tenant, c.AllowedTenants = "organizations", []string{"9188040d-6c67-4c5b-b112-36a304b66dad"}
		}, []string{"allowed_tenants: \"9188040d-6c67-4c5b-b112-36a304b66dad\" is the tenant of personal"}},
		{"tenant not a GUID or domain", func(c *MicrosoftConfig) { c.Tenant = "my tenant" }, []string{"tenant: \"my tenant\" is neither"}},
		{"allowed tenant by domain", func(c *MicrosoftConfig) { c.Tenant, c.AllowedTenants = "organizations", []string{"b.example"} },
			[]string{`allowed_tenants: "b.example" is not a tenant id`}},
		{"single tenant missing from allowed_tenants", func(c *MicrosoftConfig) { c.AllowedTenants = []string{msTenantB} },
			[]string{"allowed_tenants: does not list the tenant"}},
		{"secret and assertion", func(c *MicrosoftConfig) { c.ClientAssertionFile = assertion },
			[]string{"client_assertion_file: set either client_secret or client_assertion_file, not both"}},
		{"neither secret nor assertion", func(c *MicrosoftConfig) { c.ClientSecret = "" }, []string{"client_secret: required"}},
		{"assertion file missing", func(c *MicrosoftConfig) { c.ClientSecret, c.ClientAssertionFile = "", filepath.Join(dir, "nope") },
			[]string{"client_assertion_file: cannot read"}},
		{"no client id", func(c *MicrosoftConfig) { c.ClientID = "" }, []string{"client_id: required"}},
		{"no offline_access", func(c *MicrosoftConfig) { c.Scopes = []string{"openid", "profile", "email"} },
			[]string{`scopes: must include "offline_access"`}},
		{"no profile", func(c *MicrosoftConfig) { c.Scopes = []string{"openid", "offline_access", "User.Read"} },
			[]string{`scopes: must include "profile"`}},
		{"groups without a Graph scope", func(c *MicrosoftConfig) {
			c.Scopes, c.AllowedGroups = []string{"openid", "profile", "offline_access"}, []string{msGroupOps}
		}, []string{"scopes: must include User.Read"}},
		{"groups with the full Graph scope name", func(c *MicrosoftConfig) {
			c.Scopes = []string{"openid", "profile", "offline_access", "https://graph.microsoft.com/GroupMember.Read.All"}
			c.AllowedGroups = []string{msGroupOps}
		}, nil},
		{"graph_url", func(c *MicrosoftConfig) { c.GraphURL = "graph.microsoft.com" }, []string{"graph_url: \"graph.microsoft.com\" is not"}},
		{"empty group name", func(c *MicrosoftConfig) { c.GroupNames = map[string]string{msGroupOps: ""} }, []string{"group_names: entries map"}},
		{"protocol parameter", func(c *MicrosoftConfig) { c.ExtraAuthParams = map[string]string{"nonce": "x"} },
			[]string{"extra_auth_params.nonce: is a parameter of the protocol"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultMicrosoft()
			c.Enabled, c.Tenant, c.ClientID, c.ClientSecret = true, msTenantA, msClientID, msSecret
			if tt.edit != nil {
				tt.edit(&c)
			}
			var got []string
			for _, p := range c.validate() {
				got = append(got, p.Key+": "+p.Message)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("problems %q, want %q", got, tt.want)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("problem %q, want it to begin %q", got[i], w)
				}
			}
		})
	}
}
