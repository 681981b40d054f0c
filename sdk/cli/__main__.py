from sdk.cli import entry

entry()
