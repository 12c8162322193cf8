package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

func newServeCommand(stderr io.Writer, environ []string) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the proxy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := loadConfig(configFile(file, getenvFrom(environ)), environ)
			if err != nil {
				return err
			}
			log := newLogger(stderr, l.Config.Logging)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, l, log, environ)
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "config file (default $GATEHOUSE_CONFIG, else ./gatehouse.yaml if present)")
	return cmd
}

func newCheckCommand(stdout io.Writer, environ []string) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration and print it with secrets redacted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := loadConfig(configFile(file, getenvFrom(environ)), environ)
			if err != nil {
				return err
			}
			// Warnings go to stderr, one line each; they never change
			// the exit code.
			for _, w := range l.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			if l.File != "" {
				fmt.Fprintf(stdout, "# configuration from %s and the environment\n", l.File)
			} else {
				fmt.Fprintln(stdout, "# configuration from defaults and the environment")
			}
			out, err := yaml.Marshal(redacted(reflect.ValueOf(l.Config)))
			if err != nil {
				return err
			}
			_, err = stdout.Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "config file (default $GATEHOUSE_CONFIG, else ./gatehouse.yaml if present)")
	return cmd
}

func newGenSecretCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "gen-secret",
		Short: "Print a fresh random secret for session.secret",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			b := make([]byte, 32)
			if _, err := rand.Read(b); err != nil {
				return err
			}
			_, err := fmt.Fprintln(stdout, base64.RawURLEncoding.EncodeToString(b))
			return err
		},
	}
}

func newHashTokenCommand(stdin io.Reader, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "hash-token",
		Short: "Read a token on stdin and print its SHA-256 for tokens.static[].sha256",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			tok := strings.TrimSpace(line)
			if tok == "" {
				return errors.New("no token on standard input")
			}
			sum := sha256.Sum256([]byte(tok))
			_, err = fmt.Fprintln(stdout, hex.EncodeToString(sum[:]))
			return err
		},
	}
}

func newVersionCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version, commit and Go version",
		Args:  cobra.NoArgs,
		Run: func(*cobra.Command, []string) {
			fmt.Fprintf(stdout, "gatehouse %s (commit %s, %s)\n", version, commit, runtime.Version())
		},
	}
}

func getenvFrom(environ []string) func(string) string {
	return func(key string) string {
		for _, kv := range environ {
			if k, v, ok := strings.Cut(kv, "="); ok && k == key {
				return v
			}
		}
		return ""
	}
}

// redacted renders a config struct as a map for printing, replacing every
// non-empty field tagged secret:"true" by "<redacted>".
func redacted(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Struct:
		if d, ok := v.Interface().(time.Duration); ok {
			return d.String()
		}
		out := map[string]any{}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
			if opts == "squash" {
				for k, x := range redacted(v.Field(i)).(map[string]any) {
					out[k] = x
				}
				continue
			}
			if f.Tag.Get("secret") == "true" && !v.Field(i).IsZero() {
				out[name] = "<redacted>"
				continue
			}
			out[name] = redacted(v.Field(i))
		}
		return out
	case reflect.Map:
		out := map[string]any{}
		for _, k := range v.MapKeys() {
			out[fmt.Sprint(k.Interface())] = redacted(v.MapIndex(k))
		}
		return out
	case reflect.Slice:
		out := make([]any, v.Len())
		for i := range out {
			out[i] = redacted(v.Index(i))
		}
		return out
	case reflect.Int64:
		if d, ok := v.Interface().(time.Duration); ok {
			return d.String()
		}
	case reflect.Pointer:
		// An optional key (a route's timeout, its headers): its value, or
		// null when unset.
		if v.IsNil() {
			return nil
		}
		return redacted(v.Elem())
	}
	return v.Interface()
}
