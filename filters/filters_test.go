package filters

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/identity"
)

// asciiLowerForTest is the oracle's own ASCII-only lower-casing, written
// independently of the code under test.
func asciiLowerForTest(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, s)
}

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
		{"trailing dot is another name", verified("a@example.com."), KindEmail},
		{"domain as a subdomain's label", verified("a@example.com.evil.test"), KindEmail},
		{"address list is exact, not a suffix", verified("xpartner@other.net"), KindEmail},
		{"address list is case-insensitive", verified("PARTNER@OTHER.NET"), ""},
		{"unverified listed address", identity.Identity{Email: "partner@other.net"}, KindUnverified},
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

// FuzzDomainAndEmail checks the address filters against any string: an
// address without exactly one '@' (with something on both sides) never
// passes a domain or address rule, a passing address is at an allowed
// domain, an unverified address never passes, and nothing panics.
func FuzzDomainAndEmail(f *testing.F) {
	// More seeds, non-ASCII look-alikes and a byte order mark among them,
	// are in testdata/fuzz/FuzzDomainAndEmail.
	for _, s := range []string{"alice@example.com", "a@evil.com@example.com", "@example.com", "example.com", "a@sub.example.com", "A@EXAMPLE.COM", "a@.example.com", ""} {
		f.Add(s)
	}
	rule := NewRule(Lists{Domains: []string{"example.com", ".corp.example.com"}})
	wildcard := NewRule(Lists{Domains: []string{"*"}})
	listed := NewRule(Lists{Emails: []string{"alice@example.com"}})
	f.Fuzz(func(t *testing.T, email string) {
		verified := identity.Identity{Email: email, EmailVerified: true}
		oneAt := strings.Count(email, "@") == 1 && !strings.HasPrefix(email, "@") && !strings.HasSuffix(email, "@")
		for name, r := range map[string]Rule{"domains": rule, "wildcard": wildcard, "address": listed} {
			if r.Check(verified).Allowed && !oneAt {
				t.Fatalf("%s rule passed %q, which is not one local part, one '@', one domain", name, email)
			}
			if r.Check(identity.Identity{Email: email}).Allowed {
				t.Fatalf("%s rule passed unverified %q", name, email)
			}
		}
		if rule.Check(verified).Allowed {
			domain := asciiLowerForTest(email[strings.Index(email, "@")+1:])
			if domain != "example.com" && !strings.HasSuffix(domain, ".corp.example.com") {
				t.Fatalf("%q passed with domain %q", email, domain)
			}
		}
		// Case-insensitive in ASCII only: "al\u0130ce@example.com" is not
		// the listed address (see TestNonASCIIDoesNotFoldIntoAnAllowedName).
		if listed.Check(verified).Allowed && asciiLowerForTest(email) != "alice@example.com" {
			t.Fatalf("%q passed the address list", email)
		}
	})
}

func TestDomainPatterns(t *testing.T) {
	tests := []struct {
		pattern, email string
		want           bool
	}{
		{"example.com", "a@example.com", true},
		{"example.com", "a@EXAMPLE.com", true},
		{"EXAMPLE.COM", "a@example.com", true},
		{"example.com", "a@sub.example.com", false},
		{"example.com", "a@badexample.com", false},
		{".example.com", "a@sub.example.com", true},
		{".example.com", "a@a.b.example.com", true},
		{".example.com", "a@SUB.Example.COM", true},
		{".example.com", "a@example.com", false},    // the apex is not a subdomain
		{".example.com", "a@badexample.com", false}, // no dot before "example.com"
		{".example.com", "a@.example.com", false},   // empty label
		{".example.com", "a@sub.example.com.evil.test", false},
		{"*", "a@anything.test", true},
		{"*", "a@evil.com@example.com", false},
		{"*", "no-at-sign", false},
		{"*", "a@", false},
		{"*", "@example.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.email, func(t *testing.T) {
			rule := NewRule(Lists{Domains: []string{tt.pattern}})
			if got := rule.Check(verified(tt.email)).Allowed; got != tt.want {
				t.Fatalf("allowed = %v, want %v", got, tt.want)
			}
			if rule.Check(identity.Identity{Email: tt.email}).Allowed {
				t.Fatal("an unverified address passed")
			}
		})
	}
}

func TestRuleAddressWithTwoAtSignsNeverMatches(t *testing.T) {
	// Whichever '@' a lenient parser picks, this address must not be
	// taken as belonging to either domain or listed address.
	rule := NewRule(Lists{Domains: []string{"example.com", "evil.com", "*"}, Emails: []string{"a@evil.com@example.com", "a@evil.com"}})
	for _, email := range []string{"a@evil.com@example.com", "a@@example.com", "a@example.com@", "@a@example.com"} {
		if d := rule.Check(verified(email)); d.Allowed || d.Kind != KindEmail {
			t.Errorf("Check(%q) = %+v, want a denial of kind email", email, d)
		}
	}
}

func TestRuleOrWithinAListAndOrAcrossAddressKinds(t *testing.T) {
	tests := []struct {
		name  string
		lists Lists
		id    identity.Identity
		want  bool
	}{
		{"second domain of the list", Lists{Domains: []string{"a.test", "b.test"}}, verified("x@b.test"), true},
		{"listed address outside the domains", Lists{Domains: []string{"a.test"}, Emails: []string{"guest@c.test"}}, verified("guest@c.test"), true},
		{"domain match with an address list", Lists{Domains: []string{"a.test"}, Emails: []string{"guest@c.test"}}, verified("x@a.test"), true},
		{"neither", Lists{Domains: []string{"a.test"}, Emails: []string{"guest@c.test"}}, verified("x@c.test"), false},
		{"second organization", Lists{Organizations: []string{"one", "Two"}}, identity.Identity{Organizations: []string{"zero", "two"}}, true},
		{"second team", Lists{Teams: []string{"acme/a", "acme/b"}}, identity.Identity{Teams: []string{"ACME/B"}}, true},
		{"second user", Lists{Users: []string{"alice", "Bob"}}, identity.Identity{Login: "BOB"}, true},
		{"empty login never matches", Lists{Users: []string{"alice"}}, identity.Identity{}, false},
		{"second group", Lists{Groups: []string{"ops", "dev"}}, identity.Identity{Groups: []string{"dev"}}, true},
		// AND across kinds: a group match does not make up for the e-mail.
		{"group but wrong domain", Lists{Domains: []string{"a.test"}, Groups: []string{"ops"}}, identity.Identity{Email: "x@b.test", EmailVerified: true, Groups: []string{"ops"}}, false},
		{"domain but no group", Lists{Domains: []string{"a.test"}, Groups: []string{"ops"}}, identity.Identity{Email: "x@a.test", EmailVerified: true}, false},
		{"domain and group", Lists{Domains: []string{"a.test"}, Groups: []string{"ops"}}, identity.Identity{Email: "x@a.test", EmailVerified: true, Groups: []string{"ops"}}, true},
		{"org but not user", Lists{Organizations: []string{"acme"}, Users: []string{"alice"}}, identity.Identity{Organizations: []string{"acme"}, Login: "bob"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NewRule(tt.lists).Check(tt.id).Allowed; got != tt.want {
				t.Fatalf("allowed = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRuleUnverifiedAddressNeverMatches(t *testing.T) {
	unverified := identity.Identity{Email: "alice@example.com", Organizations: []string{"acme"}}
	for name, lists := range map[string]Lists{
		"domain":          {Domains: []string{"example.com"}},
		"wildcard domain": {Domains: []string{"*"}},
		"address":         {Emails: []string{"alice@example.com"}},
		"address and org": {Emails: []string{"alice@example.com"}, Organizations: []string{"acme"}},
	} {
		t.Run(name, func(t *testing.T) {
			if d := NewRule(lists).Check(unverified); d.Allowed || d.Kind != KindUnverified {
				t.Fatalf("got %+v, want a denial of kind %q", d, KindUnverified)
			}
		})
	}
	// Without an address filter, verification does not matter.
	if !NewRule(Lists{Organizations: []string{"acme"}}).Check(unverified).Allowed {
		t.Fatal("an organization-only rule looked at the e-mail")
	}
}

func TestEveryDenialHasAMessageWithoutConfiguration(t *testing.T) {
	configured := []string{"secret-corp.example", "boss@secret-corp.example", "hidden-org", "hidden-org/red-team", "octo-admin", "g-admins"}
	rule := NewRule(Lists{
		Domains: configured[:1], Emails: configured[1:2], Organizations: configured[2:3],
		Teams: configured[3:4], Users: configured[4:5], Groups: configured[5:],
	})
	pass := identity.Identity{Email: "a@secret-corp.example", EmailVerified: true, Organizations: []string{"hidden-org"},
		Teams: []string{"hidden-org/red-team"}, Login: "octo-admin", Groups: []string{"g-admins"}}
	if !rule.Check(pass).Allowed {
		t.Fatal("the passing identity was denied")
	}
	for want, mutate := range map[Kind]func(*identity.Identity){
		KindUnverified:   func(id *identity.Identity) { id.EmailVerified = false },
		KindEmail:        func(id *identity.Identity) { id.Email = "a@other.test" },
		KindOrganization: func(id *identity.Identity) { id.Organizations = []string{"other"} },
		KindTeam:         func(id *identity.Identity) { id.Teams = nil },
		KindUser:         func(id *identity.Identity) { id.Login = "someone" },
		KindGroup:        func(id *identity.Identity) { id.Groups = []string{"g-users"} },
	} {
		t.Run(string(want), func(t *testing.T) {
			id := pass
			mutate(&id)
			d := rule.Check(id)
			if d.Allowed || d.Kind != want {
				t.Fatalf("got %+v, want a denial of kind %q", d, want)
			}
			msg := d.Message()
			if msg == "" {
				t.Fatal("empty message")
			}
			for _, c := range configured {
				if strings.Contains(strings.ToLower(msg), strings.ToLower(c)) {
					t.Fatalf("message %q reveals the configured %q", msg, c)
				}
			}
		})
	}
	if msg := (Decision{Kind: KindRevoked}).Message(); msg == "" {
		t.Error("revoked has no message")
	}
}

func TestConfigValidateDomainsAndEmails(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		problem string // key of the one expected problem; "" for none
	}{
		{"plain domain", Config{AllowedDomains: []string{"example.com"}}, ""},
		{"subdomains", Config{AllowedDomains: []string{".example.com"}}, ""},
		{"wildcard", Config{AllowedDomains: []string{"*"}}, ""},
		{"upper case", Config{AllowedDomains: []string{"Example.COM"}}, ""},
		{"glob form", Config{AllowedDomains: []string{"*.example.com"}}, "allowed_domains"},
		{"lone dot", Config{AllowedDomains: []string{"."}}, "allowed_domains"},
		{"empty", Config{AllowedDomains: []string{""}}, "allowed_domains"},
		{"trailing dot", Config{AllowedDomains: []string{"example.com."}}, "allowed_domains"},
		{"space inside", Config{AllowedDomains: []string{"exa mple.com"}}, "allowed_domains"},
		{"with port", Config{AllowedDomains: []string{"example.com:443"}}, "allowed_domains"},
		{"an address", Config{AllowedDomains: []string{"a@example.com"}}, "allowed_domains"},
		{"good address", Config{AllowedEmails: []string{"a@example.com"}}, ""},
		{"no local part", Config{AllowedEmails: []string{"@example.com"}}, "allowed_emails"},
		{"no domain", Config{AllowedEmails: []string{"a@"}}, "allowed_emails"},
		{"two @", Config{AllowedEmails: []string{"a@evil.com@example.com"}}, "allowed_emails"},
		{"space", Config{AllowedEmails: []string{"a b@example.com"}}, "allowed_emails"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ps := tt.cfg.Validate()
			if tt.problem == "" {
				if len(ps) != 0 {
					t.Fatalf("problems = %v, want none", ps)
				}
				return
			}
			if len(ps) != 1 || ps[0].Key != tt.problem {
				t.Fatalf("problems = %v, want one on %s", ps, tt.problem)
			}
		})
	}
}

func TestReadEmailsFile(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []string
		errLine string // "" for no error
	}{
		{"comments and blank lines", "# staff\n\nalice@example.com\n   \n  # indented comment\n\tbob@example.com  \n", []string{"alice@example.com", "bob@example.com"}, ""},
		{"windows line endings", "alice@example.com\r\nbob@example.com\r\n", []string{"alice@example.com", "bob@example.com"}, ""},
		{"no final newline", "alice@example.com", []string{"alice@example.com"}, ""},
		{"only comments", "# nobody yet\n", nil, ""},
		{"malformed line counted past comments", "# staff\n\nalice@example.com\n# more\nbob@@example.com\n", nil, "line 5"},
		{"two addresses on a line", "alice@example.com bob@example.com\n", nil, "line 1"},
		{"no @", "alice@example.com\nbob\n", nil, "line 2"},
		{"trailing comment on a line", "alice@example.com # admin\n", nil, "line 1"},
		{"byte order mark", "\ufeffalice@example.com\nbob@example.com\n", []string{"alice@example.com", "bob@example.com"}, ""},
		{"byte order mark before a comment", "\ufeff# staff\nalice@example.com\n", []string{"alice@example.com"}, ""},
		{"byte order mark on a later line", "alice@example.com\n\ufeffbob@example.com\n", nil, "line 2"},
		{"zero width space", "alice@example.com\nbob@exa\u200bmple.com\n", nil, "line 2"},
		{"no-break space inside", "alice\u00a0@example.com\n", nil, "line 1"},
		{"invalid UTF-8", "alice@example.com\nb\xe9b@example.com\n", nil, "line 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "emails.txt")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadEmailsFile(path)
			if tt.errLine != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errLine+":") {
					t.Fatalf("err = %v, want one naming %s", err, tt.errLine)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("addresses = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAddressesFromFileFilter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "emails.txt")
	if err := os.WriteFile(path, []byte("# contractors\nBob@Partner.test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lists, ps := Config{AllowedDomains: []string{"example.com"}, AllowedEmails: []string{"carol@other.test"}, AllowedEmailsFile: path}.Validate()
	if len(ps) != 0 {
		t.Fatal(ps)
	}
	rule := NewRule(lists)
	for email, want := range map[string]bool{
		"alice@example.com": true, "bob@partner.test": true, "carol@other.test": true, "eve@partner.test": false,
	} {
		if got := rule.Check(verified(email)).Allowed; got != want {
			t.Errorf("%s: allowed = %v, want %v", email, got, want)
		}
	}
}

func TestCompilePoliciesAcceptsMethodsInAnyCase(t *testing.T) {
	ps, problems := CompilePolicies([]PolicyConfig{{Path: "^/deploy", Methods: []string{" post ", "Put"}, AllowedGroups: []string{"ops"}}})
	if len(problems) != 0 {
		t.Fatal(problems)
	}
	dev := identity.Identity{Groups: []string{"dev"}}
	for method, want := range map[string]bool{"POST": false, "PUT": false, "GET": true} {
		if got := ps.Check(method, "/deploy", dev).Allowed; got != want {
			t.Errorf("%s /deploy: allowed = %v, want %v", method, got, want)
		}
	}
	if len(Policies(nil)) != 0 || !Policies(nil).Check("GET", "/admin", identity.Identity{}).Allowed {
		t.Error("no policies must allow every route")
	}
}

// TestNonASCIIDoesNotFoldIntoAnAllowedName: "İbm.com" (with U+0130, an
// internationalized domain of its own, xn--...) is not "ibm.com", and
// "alİce" is not "alice". Lower-casing with Unicode rules maps U+0130 to a
// plain 'i' (and U+212A, the Kelvin sign, to 'k'), so an address at a
// look-alike domain someone else can register would pass a domain filter.
// ASCII case-insensitivity still holds.
func TestNonASCIIDoesNotFoldIntoAnAllowedName(t *testing.T) {
	rule := NewRule(Lists{Domains: []string{"ibm.com", ".wiki.org", "kube.test"}, Emails: []string{"alice@partner.test", "Kim@Partner.Test"}})
	tests := []struct {
		email string
		want  bool
	}{
		{"a@\u0130bm.com", false},
		{"a@\u0130BM.COM", false},
		{"a@x.w\u0130ki.org", false},
		{"a@\u212Aube.test", false}, // Kelvin sign
		{"al\u0130ce@partner.test", false},
		{"AL\u0130CE@PARTNER.TEST", false},
		{"\u212Aim@partner.test", false},
		{"\u212A\u0130M@partner.test", false},
		{"a@IBM.com", true},
		{"a@X.WIKI.org", true},
		{"a@KUBE.test", true},
		{"ALICE@Partner.Test", true},
		{"kim@partner.test", true},
	}
	for _, tt := range tests {
		t.Run(tt.email, func(t *testing.T) {
			if got := rule.Check(verified(tt.email)).Allowed; got != tt.want {
				t.Fatalf("allowed = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestNonASCIIDoesNotFoldIntoAllowedNamesOfOtherKinds: organizations,
// teams, users and group paths compare case-insensitively in ASCII only.
func TestNonASCIIDoesNotFoldIntoAllowedNamesOfOtherKinds(t *testing.T) {
	tests := []struct {
		name  string
		lists Lists
		id    identity.Identity
		want  bool
	}{
		{"organization with Kelvin sign", Lists{Organizations: []string{"kube"}}, identity.Identity{Organizations: []string{"\u212Aube"}}, false},
		{"organization in other ASCII case", Lists{Organizations: []string{"kube"}}, identity.Identity{Organizations: []string{"KUBE"}}, true},
		{"team with Kelvin sign", Lists{Teams: []string{"acme/kube"}}, identity.Identity{Teams: []string{"acme/\u212Aube"}}, false},
		{"team in other ASCII case", Lists{Teams: []string{"acme/kube"}}, identity.Identity{Teams: []string{"ACME/Kube"}}, true},
		{"user with Kelvin sign", Lists{Users: []string{"kim"}}, identity.Identity{Login: "\u212Aim"}, false},
		{"user in other ASCII case", Lists{Users: []string{"kim"}}, identity.Identity{Login: "Kim"}, true},
		{"group path with dotted capital I", Lists{Groups: []string{"acme/infra"}}, identity.Identity{Groups: []string{"acme/\u0130nfra/db"}, GroupsArePaths: true}, false},
		{"group path in other ASCII case", Lists{Groups: []string{"acme/infra"}}, identity.Identity{Groups: []string{"Acme/INFRA/db"}, GroupsArePaths: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NewRule(tt.lists).Check(tt.id).Allowed; got != tt.want {
				t.Fatalf("allowed = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestEmailsFileWithByteOrderMark: editors on Windows save UTF-8 with a
// byte order mark; the first address must still count (or be an error
// naming line 1), never be silently dropped.
func TestEmailsFileWithByteOrderMark(t *testing.T) {
	path := filepath.Join(t.TempDir(), "emails.txt")
	if err := os.WriteFile(path, []byte("\ufeffalice@example.com\nbob@example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lists, ps := Config{AllowedEmailsFile: path}.Validate()
	if len(ps) == 1 && strings.Contains(ps[0].Message, "line 1") {
		return // refusing the file is fine too
	}
	if len(ps) != 0 || !NewRule(lists).Check(verified("alice@example.com")).Allowed {
		t.Fatalf("the first address of a file with a BOM was dropped: lists %q, problems %v", lists.Emails, ps)
	}
}

// allowed_users names GitHub logins; an account linked by its verified
// e-mail address (auth.link_accounts_by_verified_email) is named by that
// address, whatever provider it signed in with. Unlinked, an address
// never passes for a user.
func TestAllowedUsersAndLinkedAccounts(t *testing.T) {
	rule := NewRule(Lists{Users: []string{"octocat", "Alice@Example.com"}})
	github := identity.Identity{Provider: "github", Login: "alice-gh", Email: "alice@example.com", EmailVerified: true}
	corp := identity.Identity{Provider: "corp", User: "alice", Email: "alice@example.com", EmailVerified: true}
	tests := []struct {
		name string
		id   identity.Identity
		want bool
	}{
		{"github login listed", identity.Identity{Provider: "github", Login: "OctoCat"}, true},
		{"github, not linked", github, false},
		{"oidc, not linked", corp, false},
		{"github, linked", identity.LinkByEmail(github), true},
		{"oidc, linked", identity.LinkByEmail(corp), true},
		{"unverified address never links", identity.LinkByEmail(identity.Identity{Provider: "corp", Email: "alice@example.com"}), false},
		{"look-alike address", identity.LinkByEmail(identity.Identity{Provider: "corp", Email: "alİce@example.com", EmailVerified: true}), false},
	}
	for _, tt := range tests {
		if got := rule.Check(tt.id).Allowed; got != tt.want {
			t.Errorf("%s: allowed %v, want %v", tt.name, got, tt.want)
		}
	}
}
