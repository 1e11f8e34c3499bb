package supervisor

import "github.com/kato-manager/kato-manager/config"

// NewStartRequest is the request to start the instance l describes, l
// being a start layered by config.Layer (the CLI's flags, the dashboard's
// form): its name, processor, network, group and parameters put into req,
// which holds the rest (id, ports, command, what was typed, timeout). The
// request is validated as a whole and its processor must be one of cfg.
func NewStartRequest(cfg *config.Config, l *config.Entry, req StartRequest) (StartRequest, error) {
	req.Name, req.Processor, req.Network, req.Group = l.Name, l.Processor, l.Network, l.Group
	req.Parameters = l.Parameters
	req.Weight = l.Weight
	if err := ValidateStart(req); err != nil {
		return StartRequest{}, err
	}
	if _, err := cfg.ProcessorNamed(req.Processor); err != nil {
		return StartRequest{}, err
	}
	return req, nil
}
