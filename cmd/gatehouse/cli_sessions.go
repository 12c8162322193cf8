package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/account"
)

// newSessionsCommand is `gatehouse sessions URL`: the signed-in user's
// sessions and tokens, read with the stored token.
func newSessionsCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "sessions URL",
		Short: "List your sessions and tokens at URL (with the token `gatehouse login` stored)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			base, t, err := storedTokenFor(args[0])
			if err != nil {
				return err
			}
			client := &http.Client{Timeout: 30 * time.Second}
			// The endpoints share the prefix of the advertised token endpoint.
			endpoint := base + "/oauth2/sessions"
			// Only on base's own origin: the stored token is sent there.
			if meta, err := discover(cmd.Context(), client, base); err == nil && strings.HasPrefix(meta.TokenEndpoint, base+"/") && strings.HasSuffix(meta.TokenEndpoint, "/token") {
				endpoint = strings.TrimSuffix(meta.TokenEndpoint, "/token") + "/sessions"
			}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, endpoint, nil)
			if err != nil {
				return err
			}
			req.Header.Set("Accept", "application/json")
			req.Header.Set("Authorization", "Bearer "+t.AccessToken)
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("listing sessions at %s: %s", base, resp.Status)
			}
			var list account.List
			if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&list); err != nil {
				return fmt.Errorf("listing sessions at %s: %w", base, err)
			}
			return printSessions(stdout, list)
		},
	}
}

func printSessions(w io.Writer, list account.List) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tPROVIDER\tCREATED\tLAST SEEN\tFROM\t")
	for _, s := range list.Sessions {
		id := s.ID
		if s.Current {
			id += " (this one)"
		}
		seen := "-"
		if s.LastSeen != nil {
			seen = s.LastSeen.Local().Format(time.DateTime)
		}
		from := strings.Trim(s.ClientIP+" "+s.UserAgent, " ")
		if s.Kind == "device" {
			from = s.ClientID + " (" + strings.Join(s.Scopes, " ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", id, s.Kind, s.Provider, s.CreatedAt.Local().Format(time.DateTime), seen, from)
	}
	return tw.Flush()
}
