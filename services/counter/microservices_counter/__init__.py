"""The support tier's counter: POSTs a random increment to the server every INTERVAL seconds."""
