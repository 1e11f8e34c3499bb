package supervisor

import (
	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/units"
)

// checkGenerationCNetwork refuses a private network for a generation-C
// instance: it reaches its shared stores over the host's network, which a
// namespace of its own would cut it off from.
func checkGenerationCNetwork(proc config.Processor, network string) error {
	if proc.Generation == units.GenerationC && network == config.NetworkPrivate {
		return &config.FieldError{Field: "network", Value: network, Rule: "must be host for a generation-c processor, which reaches its shared stores over the host's network"}
	}
	return nil
}
