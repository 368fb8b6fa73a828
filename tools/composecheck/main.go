// composecheck loads compose files with compose-go, the loader Docker Compose itself uses,
// and prints the resolved project as JSON: interpolated with .env, override files merged
// (including !override and !reset), validated against the Compose Specification, and
// checked for consistency (unknown services in depends_on, undefined secrets or volumes).
// It never contacts a Docker engine. Usage, from the project root:
//
//	composecheck docker-compose.yml [override.yml ...]
//
// Every profile is enabled so that profile-gated services are checked too. Warnings (an
// unset variable, for example) go to stderr; a load error exits with status 1.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: composecheck docker-compose.yml [override.yml ...]")
		os.Exit(2)
	}
	options, err := cli.NewProjectOptions(
		os.Args[1:],
		cli.WithWorkingDirectory("."),
		cli.WithOsEnv,
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithProfiles([]string{"*"}),
	)
	if err != nil {
		fail(err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fail(err)
	}
	os.Stdout.Write(out)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "composecheck:", err)
	os.Exit(1)
}
