"""A faithful HTTP simulator of the ConnectWise Manage REST API (agreements, additions, companies, callbacks).

See docs/cwsim.md. Entry points: `contract-sync cw-sim serve|ctl` (services.cwsim.cli) and, for tests,
`services.cwsim.testing.run_simulator(...)`.
"""
