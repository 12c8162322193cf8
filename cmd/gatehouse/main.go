// Command gatehouse is an authenticating reverse proxy: it signs people in
// with GitHub, GitLab or any OpenID Connect provider, decides who may pass,
// and forwards their identity to the service behind it.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

// exitConfig is the exit code for an invalid configuration.
const exitConfig = 2

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Environ()))
}

// run is main without the process: tests call it directly.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, environ []string) int {
	root := newRootCommand(stdin, stdout, stderr, environ)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ce *ConfigError
	if errors.As(err, &ce) {
		fmt.Fprintln(stderr, "invalid configuration:")
		fmt.Fprintln(stderr, ce.Error())
		return exitConfig
	}
	fmt.Fprintln(stderr, "error:", err)
	return 1
}

func newRootCommand(stdin io.Reader, stdout, stderr io.Writer, environ []string) *cobra.Command {
	root := &cobra.Command{
		Use:           "gatehouse",
		Short:         "Gatehouse is an authenticating reverse proxy",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		newServeCommand(stderr, environ),
		newCheckCommand(stdout, environ),
		newDemoCommand(stdout, stderr),
		newGenSecretCommand(stdout),
		newHashTokenCommand(stdin, stdout),
		newVersionCommand(stdout),
		newLoginCommand(stdout, stderr),
		newTokenCommand(stdout),
		newLogoutCommand(stdout),
		newSessionsCommand(stdout),
	)
	return root
}
