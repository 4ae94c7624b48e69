"""The support tier's poller: prints the server's count every INTERVAL seconds."""
