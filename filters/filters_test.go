package filters

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/identity"
)

func verified(email string) identity.Identity {
	return identity.Identity{Email: email, EmailVerified: true}
}

func TestRuleEmailAndDomain(t *testing.T) {
	rule := NewRule(Lists{Domains: []string{"Example.com", ".corp.example.org"}, Emails: []string{"Partner@Other.net"}})
	tests := []struct {
		name string
		id   identity.Identity
		want Kind
	}{
		{"exact domain", verified("alice@example.com"), ""},
		{"domain case-insensitive", verified("ALICE@EXAMPLE.COM"), ""},
		{"subdomain of a plain domain does not match", verified("a@sub.example.com"), KindEmail},
		{"look-alike domain", verified("a@badexample.com"), KindEmail},
		{"leading dot admits subdomains", verified("a@eu.corp.example.org"), ""},
		{"leading dot admits deeper subdomains", verified("a@x.eu.corp.example.org"), ""},
		{"leading dot does not admit the apex", verified("a@corp.example.org"), KindEmail},
		{"listed address", verified("partner@other.net"), ""},
		{"unlisted address at that domain", verified("intern@other.net"), KindEmail},
		{"two @: never", verified("a@evil.com@example.com"), KindEmail},
		{"no @: never", verified("example.com"), KindEmail},
		{"empty local part", verified("@example.com"), KindEmail},
		{"unverified never matches", identity.Identity{Email: "alice@example.com"}, KindUnverified},
		{"no e-mail", identity.Identity{EmailVerified: true}, KindEmail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := rule.Check(tt.id)
			if d.Kind != tt.want || d.Allowed != (tt.want == "") {
				t.Fatalf("Check(%q) = %+v, want kind %q", tt.id.Email, d, tt.want)
			}
		})
	}
}

func TestRuleWildcardDomainStillNeedsVerifiedAddress(t *testing.T) {
	rule := NewRule(Lists{Domains: []string{"*"}})
	if !rule.Check(verified("anyone@anywhere.test")).Allowed {
		t.Fatal("* should admit any verified address")
	}
	if rule.Check(identity.Identity{Email: "anyone@anywhere.test"}).Allowed {
		t.Fatal("* admitted an unverified address")
	}
	if rule.Check(verified("a@b@c")).Allowed {
		t.Fatal("* admitted an address with two @")
	}
}

func TestRuleKindsCombine(t *testing.T) {
	rule := NewRule(Lists{Domains: []string{"example.com"}, Organizations: []string{"Acme"}, Teams: []string{"acme/SRE"}, Users: []string{"Octo"}})
	good := identity.Identity{Email: "o@example.com", EmailVerified: true, Organizations: []string{"acme"}, Teams: []string{"ACME/sre"}, Login: "octo"}
	if d := rule.Check(good); !d.Allowed {
		t.Fatalf("all kinds matched but denied: %+v", d)
	}
	for name, mutate := range map[string]func(*identity.Identity) Kind{
		"wrong domain": func(i *identity.Identity) Kind { i.Email = "o@other.com"; return KindEmail },
		"no org":       func(i *identity.Identity) Kind { i.Organizations = nil; return KindOrganization },
		"other team":   func(i *identity.Identity) Kind { i.Teams = []string{"acme/dev"}; return KindTeam },
		"other user":   func(i *identity.Identity) Kind { i.Login = "hubot"; return KindUser },
	} {
		t.Run(name, func(t *testing.T) {
			id := good
			want := mutate(&id)
			if d := rule.Check(id); d.Allowed || d.Kind != want {
				t.Fatalf("got %+v, want denial of kind %q", d, want)
			}
		})
	}
}

func TestRuleGroups(t *testing.T) {
	tests := []struct {
		name    string
		allowed []string
		have    []string
		paths   bool
		want    bool
	}{
		{"oidc exact", []string{"ops"}, []string{"dev", "ops"}, false, true},
		{"oidc case-sensitive", []string{"ops"}, []string{"OPS"}, false, false},
		{"oidc no prefix matching", []string{"acme/infra"}, []string{"acme/infra/db"}, false, false},
		{"gitlab subgroup passes", []string{"acme/infra"}, []string{"acme/infra/db"}, true, true},
		{"gitlab same group", []string{"acme/infra"}, []string{"acme/infra"}, true, true},
		{"gitlab case-insensitive", []string{"acme/infra"}, []string{"ACME/Infra"}, true, true},
		{"gitlab look-alike sibling", []string{"acme/infra"}, []string{"acme/infra-old"}, true, false},
		{"gitlab parent does not pass for child rule", []string{"acme/infra/db"}, []string{"acme/infra"}, true, false},
		{"no groups at all", []string{"ops"}, nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewRule(Lists{Groups: tt.allowed}).Check(identity.Identity{Groups: tt.have, GroupsArePaths: tt.paths})
			if d.Allowed != tt.want {
				t.Fatalf("allowed = %v, want %v", d.Allowed, tt.want)
			}
		})
	}
}

func TestEmptyRuleAllowsAndEmptyEntriesAreIgnored(t *testing.T) {
	if !(Rule{}).Check(identity.Identity{}).Allowed {
		t.Fatal("the zero rule must allow")
	}
	r := NewRule(Lists{Domains: []string{" ", ""}, Groups: []string{""}})
	if !r.Empty() {
		t.Fatal("blank entries should not count as filters")
	}
}

func TestDecisionMessagesNeverListConfiguredValues(t *testing.T) {
	rule := NewRule(Lists{Domains: []string{"secret-corp.example"}, Organizations: []string{"hidden-org"}, Groups: []string{"g-admins"}})
	for _, id := range []identity.Identity{
		verified("a@other.test"),
		{Email: "a@secret-corp.example", EmailVerified: true},
		{Email: "a@secret-corp.example", EmailVerified: true, Organizations: []string{"hidden-org"}},
	} {
		d := rule.Check(id)
		if d.Allowed {
			t.Fatalf("unexpectedly allowed: %+v", id)
		}
		msg := d.Message()
		if msg == "" || strings.Contains(msg, "secret-corp") || strings.Contains(msg, "hidden-org") || strings.Contains(msg, "g-admins") {
			t.Fatalf("message %q is empty or reveals configuration", msg)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.txt")
	os.WriteFile(good, []byte("# staff\nalice@example.com\n\n  bob@example.com  \n"), 0o600)
	bad := filepath.Join(dir, "bad.txt")
	os.WriteFile(bad, []byte("alice@example.com\nnot an address\n"), 0o600)

	lists, ps := Config{AllowedDomains: []string{"example.com", ".corp.com", "*"}, AllowedEmailsFile: good}.Validate()
	if len(ps) != 0 {
		t.Fatalf("problems: %v", ps)
	}
	if strings.Join(lists.Emails, ",") != "alice@example.com,bob@example.com" {
		t.Fatalf("emails from file = %v", lists.Emails)
	}
	tests := []struct {
		cfg     Config
		key, in string
	}{
		{Config{AllowedDomains: []string{"@example.com"}}, "allowed_domains", "not a domain"},
		{Config{AllowedDomains: []string{"https://example.com"}}, "allowed_domains", "not a domain"},
		{Config{AllowedDomains: []string{"..example.com"}}, "allowed_domains", "not a domain"},
		{Config{AllowedEmails: []string{"a@b@c"}}, "allowed_emails", "not an e-mail"},
		{Config{AllowedEmails: []string{"nobody"}}, "allowed_emails", "not an e-mail"},
		{Config{AllowedEmailsFile: bad}, "allowed_emails_file", "line 2"},
		{Config{AllowedEmailsFile: filepath.Join(dir, "missing")}, "allowed_emails_file", "cannot read"},
	}
	for _, tt := range tests {
		_, ps := tt.cfg.Validate()
		if len(ps) != 1 || ps[0].Key != tt.key || !strings.Contains(ps[0].Message, tt.in) {
			t.Errorf("%+v: problems = %v, want one on %s mentioning %q", tt.cfg, ps, tt.key, tt.in)
		}
	}
}

func TestPolicies(t *testing.T) {
	ps, problems := CompilePolicies([]PolicyConfig{
		{Path: "^/admin(/|$)", AllowedGroups: []string{"ops"}},
		{Path: "^/deploy$", Methods: []string{"post"}, AllowedTeams: []string{"acme/sre"}},
		{Path: "^/", Methods: []string{"DELETE"}, AllowedUsers: []string{"root"}},
	})
	if len(problems) != 0 {
		t.Fatal(problems)
	}
	ops := identity.Identity{Groups: []string{"ops"}}
	dev := identity.Identity{Groups: []string{"dev"}, Teams: []string{"acme/sre"}}
	tests := []struct {
		method, path string
		id           identity.Identity
		want         bool
	}{
		{"GET", "/admin", ops, true},
		{"GET", "/admin/users", dev, false},
		{"GET", "/administrator", dev, true}, // not the /admin route
		{"POST", "/deploy", dev, true},
		{"POST", "/deploy", ops, false},
		{"GET", "/deploy", ops, true}, // the rule is for POST only
		{"DELETE", "/anything", ops, false},
		{"GET", "/", dev, true}, // no policy matches: sign-in is enough
	}
	for _, tt := range tests {
		if got := ps.Check(tt.method, tt.path, tt.id).Allowed; got != tt.want {
			t.Errorf("%s %s as %v: allowed = %v, want %v", tt.method, tt.path, tt.id.Groups, got, tt.want)
		}
	}
	// First match wins: an earlier, looser rule shadows a later one.
	ps, _ = CompilePolicies([]PolicyConfig{
		{Path: "^/a", AllowedGroups: []string{"dev"}},
		{Path: "^/a/b", AllowedGroups: []string{"ops"}},
	})
	if !ps.Check("GET", "/a/b", dev).Allowed {
		t.Error("first matching policy did not decide")
	}
}

func TestCompilePoliciesProblems(t *testing.T) {
	_, ps := CompilePolicies([]PolicyConfig{
		{Path: "(", AllowedGroups: []string{"x"}},
		{AllowedGroups: []string{"x"}},
		{Path: "^/", Methods: []string{"FETCH"}, AllowedGroups: []string{"x"}},
		{Path: "^/"},
		{Path: "^/", AllowedTeams: []string{"no-slash"}},
	})
	want := []string{"[0].path", "[1].path", "[2].methods", "[3]", "[4].allowed_teams"}
	if len(ps) != len(want) {
		t.Fatalf("problems = %v", ps)
	}
	for i, p := range ps {
		if p.Key != want[i] {
			t.Errorf("problem %d key = %q, want %q (%s)", i, p.Key, want[i], p.Message)
		}
	}
}

func FuzzDomainAndEmail(f *testing.F) {
	for _, s := range []string{"alice@example.com", "a@evil.com@example.com", "@example.com", "example.com", "a@sub.example.com", "A@EXAMPLE.COM", "a@.example.com", ""} {
		f.Add(s)
	}
	rule := NewRule(Lists{Domains: []string{"example.com", ".corp.example.com"}})
	f.Fuzz(func(t *testing.T, email string) {
		d := rule.Check(identity.Identity{Email: email, EmailVerified: true})
		if d.Allowed {
			if strings.Count(email, "@") != 1 {
				t.Fatalf("%q passed without exactly one @", email)
			}
			domain := strings.ToLower(email[strings.Index(email, "@")+1:])
			if domain != "example.com" && !strings.HasSuffix(domain, ".corp.example.com") {
				t.Fatalf("%q passed with domain %q", email, domain)
			}
		}
		if rule.Check(identity.Identity{Email: email}).Allowed {
			t.Fatalf("unverified %q passed", email)
		}
	})
}
