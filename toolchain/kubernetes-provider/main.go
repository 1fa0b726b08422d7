// Command pulumi-resource-kubernetes serves the Kubernetes provider at the pinned release.
//
// The upstream command embeds a versioned copy of its schema and Terraform mapping, files
// generated at release time and absent from the module zip; toolchain/build generates them
// next to this file (in its build directory, never in the checkout) before compiling.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping)
}
