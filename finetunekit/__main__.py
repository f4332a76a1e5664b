from finetunekit.core.cli import main

main()
