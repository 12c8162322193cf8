package filters

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/internal/confcheck"
)

// Config is the global part of the auth section: the filters that apply to
// every provider.
type Config struct {
	AllowAllUsers     bool     `mapstructure:"allow_all_users"`
	AllowedDomains    []string `mapstructure:"allowed_domains"`
	AllowedEmails     []string `mapstructure:"allowed_emails"`
	AllowedEmailsFile string   `mapstructure:"allowed_emails_file"`
}

// Validate checks the lists and loads allowed_emails_file, returning the
// global Lists to combine with each provider's own.
func (c Config) Validate() (Lists, confcheck.Problems) {
	var ps confcheck.Problems
	checkDomains(&ps, "allowed_domains", c.AllowedDomains)
	checkEmails(&ps, "allowed_emails", c.AllowedEmails)
	emails := append([]string(nil), c.AllowedEmails...)
	if c.AllowedEmailsFile != "" {
		fromFile, err := ReadEmailsFile(c.AllowedEmailsFile)
		if err != nil {
			ps.Addf("allowed_emails_file", "%v", err)
		}
		emails = append(emails, fromFile...)
	}
	return Lists{Domains: c.AllowedDomains, Emails: emails}, ps
}

// ReadEmailsFile reads one address per line; blank lines and lines starting
// with '#' are ignored, and so is a UTF-8 byte order mark at the start of
// the file (editors on Windows write one). A malformed line, or one holding
// an invisible character that would keep the address from ever matching,
// is an error naming the line, so a typo never silently drops somebody's
// access (or grants it).
func ReadEmailsFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read: %v", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		text := sc.Text()
		if n == 1 {
			text = strings.TrimPrefix(text, "\ufeff")
		}
		line := strings.TrimSpace(text)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.Count(line, "@") != 1 || strings.ContainsFunc(line, invisible) {
			return nil, fmt.Errorf("line %d: %q is not an e-mail address", n, line)
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cannot read: %v", err)
	}
	return out, nil
}

// invisible reports characters that have no place in an address and
// cannot be seen in an editor: spaces of any kind, control characters and
// format characters such as U+200B (zero width space) or U+FEFF.
func invisible(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError
}

func checkDomains(ps *confcheck.Problems, key string, domains []string) {
	for _, d := range domains {
		d = strings.TrimSpace(d)
		if d == "*" {
			continue
		}
		host := strings.TrimPrefix(d, ".")
		if host == "" || strings.ContainsAny(host, "@/:* \t") || strings.HasPrefix(host, ".") || strings.HasSuffix(host, ".") || strings.Contains(host, "..") {
			ps.Addf(key, "%q is not a domain (use \"example.com\", \".example.com\" for its subdomains, or \"*\")", d)
		}
	}
}

func checkEmails(ps *confcheck.Problems, key string, emails []string) {
	for _, e := range emails {
		if strings.Count(e, "@") != 1 || strings.HasPrefix(e, "@") || strings.HasSuffix(e, "@") || strings.ContainsAny(e, " \t") {
			ps.Addf(key, "%q is not an e-mail address", e)
		}
	}
}

// CheckTeams reports entries that are not "org/team-slug".
func CheckTeams(ps *confcheck.Problems, key string, teams []string) {
	for _, t := range teams {
		org, team, ok := strings.Cut(strings.TrimSpace(t), "/")
		if !ok || org == "" || team == "" || strings.Contains(team, "/") {
			ps.Addf(key, "%q is not of the form \"org/team-slug\"", t)
		}
	}
}
