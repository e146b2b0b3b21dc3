"""What the tests share: object builders, fixtures' data, harnesses. Imported as
`tests.support.<module>`; nothing here is a test."""
