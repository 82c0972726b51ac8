"""A faithful HTTP simulator of the ConnectWise Manage REST API (agreements, additions, companies, callbacks).

See docs/cwsim.md. Entry points: `contract-sync cw-sim serve|ctl` (devtools.cwsim.cli) and, for tests,
`devtools.cwsim.testing.run_simulator(...)`.
"""
