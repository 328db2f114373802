package appliance

var Version = "0.0.0-dev"
